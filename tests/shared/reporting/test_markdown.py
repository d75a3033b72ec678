"""report.md escapes every value from users' names and files (issue 13, item 6): label and file names,
rejection reasons, ignored files, warnings and failure messages cannot inject raw HTML, links, images,
emphasis, headings or break out of code spans. Rendered with a CommonMark renderer, as a viewer would."""

from __future__ import annotations

import html
import json
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from shared.reporting.markdown import render_run_markdown
from shared.reporting.schema import RunReport

FIXTURES = Path(__file__).parent / "fixtures"
HOSTILE = [
    "<script>alert(1)</script>",
    "[click me](javascript:alert(1))",
    "<img src=x onerror=alert(1)>",
    "a`` <b>x</b> ``b",
    "` <script>alert(2)</script> `",
    "![pixel](https://evil.example/x.png)",
    "**bold** _em_ ~~gone~~",
    "&lt;script&gt;",
    "# heading",
    "1. item",
    "<https://evil.example>",
    "x|y",
]


def hostile_report() -> RunReport:
    data = json.loads((FIXTURES / "run_failed.json").read_text())
    summary = data["dataset_summary"]
    summary["labels"] = HOSTILE
    for split in summary["splits"].values():
        split["per_label"] = {label: 1 for label in HOSTILE}
    summary["rejected"] = [{"path": f"{n}/{name}", "code": "not_an_image", "reason": name} for n, name in enumerate(HOSTILE)]
    summary["ignored"] = HOSTILE
    summary["warnings"] = HOSTILE
    data["failure"]["message"] = "no usable images in ```\n<script>alert(3)</script>\n``` " + " ".join(HOSTILE)
    return RunReport.model_validate(data)


def rendered() -> str:
    markdown = render_run_markdown(hostile_report())
    return MarkdownIt("commonmark").enable("table").enable("strikethrough").render(markdown)


def test_hostile_names_render_as_text_only():
    page = rendered()
    for tag in ("<script", "<img", "<a ", "<b>", "<del>", "<h1>#", "heading</h1>", "<ol"):
        assert tag not in page, tag
    assert "javascript:" not in page.replace("javascript:alert(1))", "")  # only ever as visible text
    assert "<strong>bold</strong>" not in page and "<em>em</em>" not in page
    assert page.count("<h1>") == 1  # the report's own title


@pytest.mark.parametrize("value", HOSTILE)
def test_each_hostile_value_is_shown_verbatim(value):
    text = html.unescape(rendered())
    assert value in text or " ".join(value.split()) in text


def test_the_failure_message_cannot_close_its_code_block():
    page = rendered()
    assert "<script>alert(3)</script>" not in page
    assert "&lt;script&gt;alert(3)&lt;/script&gt;" in page
