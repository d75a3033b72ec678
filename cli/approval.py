"""``visiontune approve DATASET VERSION`` / ``visiontune reject DATASET VERSION --reason ...``: decide on a
candidate that passed the gate and waits in ``awaiting_approval`` (``promotion: manual``)."""

from __future__ import annotations

import argparse
import getpass
import json
from pathlib import Path

from cli.common import CommandError, command_settings, storage_errors
from shared.pipeline.approval import ApprovalError, decide


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``approve`` and ``reject``."""
    for name, help_text in (
        ("approve", "promote a candidate that waits for approval"),
        ("reject", "reject a candidate that waits for approval (its deployment is deleted)"),
    ):
        parser = subparsers.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".")
        parser.add_argument("dataset", metavar="DATASET")
        parser.add_argument("version", metavar="VERSION", help="the run's version (or a unique prefix)")
        parser.add_argument("--reason", required=name == "reject", default="", help="why (kept in the run's timeline)")
        parser.add_argument("--by", default=None, help="who decides (default: your user name)")
        parser.add_argument("--settings", type=Path, default=None, help="local.settings.json to read")
        parser.add_argument("--json", action="store_true", help="print the result as JSON")
        parser.set_defaults(handler=run_decision, approved=name == "approve")


def run_decision(args: argparse.Namespace) -> int:
    @storage_errors
    def run(args: argparse.Namespace) -> int:
        settings = command_settings(args.settings)
        try:
            result = decide(
                settings, args.dataset, args.version, approved=args.approved,
                by=args.by or getpass.getuser(), reason=args.reason,
            )
        except ApprovalError as error:
            raise CommandError(str(error)) from None
        if args.json:
            print(json.dumps(result.__dict__, indent=2))
        else:
            print(f"{result.dataset}/{result.version}: {result.state} ({result.detail})")
        return 0

    return run(args)
