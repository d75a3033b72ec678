"""``visiontune``: the console command. Subcommands come from the modules in ``COMMAND_MODULES``; each
exposes ``register(subparsers)`` and imports heavy libraries only when it runs. A command imports only its
own module."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

# The module that registers each command. `visiontune <command>` imports only that module (and so only
# what the command needs); `visiontune --help`, or an unknown command, imports them all.
COMMAND_MODULES = {
    "convert": "cli.convert",
    "validate": "cli.convert",
    "local": "cli.local",
    "push": "cli.push",
    "status": "cli.status",
    "retry": "cli.retry",
    "report": "cli.report",
    "demo": "cli.demo",
    "predict": "cli.predict",
    "events": "cli.events",
    "approve": "cli.approval",
    "reject": "cli.approval",
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser: with only ``command``'s module registered when it names a known command,
    else with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="visiontune",
        description="Labelled images in, a fine-tuned, evaluated Azure OpenAI vision model out.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    modules = [COMMAND_MODULES[command]] if command in COMMAND_MODULES else dict.fromkeys(COMMAND_MODULES.values())
    for module_name in modules:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen subcommand; returns the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(argv[0] if argv else None).parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `visiontune report ... | head`: the reader left; that is not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 0


if __name__ == "__main__":
    sys.exit(main())
