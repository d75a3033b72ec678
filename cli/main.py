"""``visiontune``: the console command. Subcommands come from the modules in ``COMMAND_MODULES``;
each exposes ``register(subparsers)`` and imports its heavy dependencies only when it runs."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

COMMAND_MODULES = (
    "cli.convert",
    "cli.local",
    "cli.push",
    "cli.status",
    "cli.retry",
    "cli.report",
    "cli.demo",
    "cli.predict",
    "cli.events",
    "cli.approval",
)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="visiontune",
        description="Labelled images in, a fine-tuned, evaluated Azure OpenAI vision model out.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen subcommand; returns the process exit code."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `visiontune report ... | head`: the reader left; that is not an error
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 0


if __name__ == "__main__":
    sys.exit(main())
