"""The ``visiontune`` parser: help texts, and which command modules a command imports."""

import subprocess
import sys
from pathlib import Path

import pytest

from cli.main import COMMAND_MODULES, build_parser

REPO = Path(__file__).resolve().parents[2]


def _commands(parser) -> dict:
    return next(a for a in parser._actions if a.dest == "command").choices


def test_help_texts_print_percent_signs_once():
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command")
    text = " ".join(subparsers.choices["demo"].format_help().split())
    assert "60% of them" in text and "%%" not in text
    for name in ("status", "report"):
        help_text = subparsers.choices[name].format_help()
        assert "DATASET" in help_text and "%%" not in help_text


def test_every_command_is_registered_by_the_module_the_map_names():
    assert set(_commands(build_parser())) == set(COMMAND_MODULES)
    for command in COMMAND_MODULES:
        assert command in _commands(build_parser(command)), command
    assert set(_commands(build_parser("no-such-command"))) == set(COMMAND_MODULES)


@pytest.mark.parametrize("command", ["status", "convert"])
def test_a_command_imports_only_its_own_command_module(command):
    code = (
        "import sys\nfrom cli.main import build_parser\n"
        f"build_parser({command!r})\n"
        "print(' '.join(sorted(m for m in sys.modules if m.startswith('cli.'))))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    loaded = set(done.stdout.split())
    assert loaded & set(COMMAND_MODULES.values()) == {COMMAND_MODULES[command]}, loaded
