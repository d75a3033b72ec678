"""The ``visiontune`` parser: help texts."""

from __future__ import annotations

from cli.main import build_parser


def test_help_texts_print_percent_signs_once():
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command")
    text = " ".join(subparsers.choices["demo"].format_help().split())
    assert "60% of them" in text and "%%" not in text
    for name in ("status", "report"):
        help_text = subparsers.choices[name].format_help()
        assert "DATASET" in help_text and "%%" not in help_text
