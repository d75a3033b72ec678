"""Every file of a report, rendered and encoded, ready to upload: the pipeline only writes the dict.

Names are relative to the folder the files belong in (``shared.layout``):
- run:        ``report_prefix(dataset, version)``  -> report.json, report.md, report.html
- evaluation: ``evaluations_prefix(dataset)``      -> <stamp>.json, <stamp>.md, <stamp>.html
- index:      ``<dataset>/`` in the reports container -> index.json, index.md, index.html
Upload each with ``content_type(name)`` so a browser opens the HTML from a blob URL instead of
downloading it.
"""

from __future__ import annotations

from pydantic import BaseModel

from shared.layout import evaluation_stem
from shared.reporting.html import render_evaluation_html, render_index_html, render_run_html
from shared.reporting.markdown import render_evaluation_markdown, render_index_markdown, render_run_markdown
from shared.reporting.schema import DatasetIndex, EvaluationReport, RunReport

CONTENT_TYPES = {
    ".json": "application/json; charset=utf-8",
    ".md": "text/markdown; charset=utf-8",
    ".html": "text/html; charset=utf-8",
}


def content_type(name: str) -> str:
    """The Content-Type to store a report file with (by extension)."""
    for extension, value in CONTENT_TYPES.items():
        if name.endswith(extension):
            return value
    return "application/octet-stream"


def _json(model: BaseModel) -> bytes:
    return (model.model_dump_json(indent=2) + "\n").encode("utf-8")


def render_report_files(report: RunReport) -> dict[str, bytes]:
    """``{"report.json", "report.md", "report.html"}`` of one run, UTF-8 encoded."""
    return {
        "report.json": _json(report),
        "report.md": render_run_markdown(report).encode("utf-8"),
        "report.html": render_run_html(report).encode("utf-8"),
    }


def render_evaluation_files(report: EvaluationReport) -> dict[str, bytes]:
    """``{"<stamp>.json", "<stamp>.md", "<stamp>.html"}`` of one scheduled evaluation (stamp from
    ``evaluation_stem(report.generated_at)``), UTF-8 encoded."""
    stem = evaluation_stem(report.generated_at)
    return {
        f"{stem}.json": _json(report),
        f"{stem}.md": render_evaluation_markdown(report).encode("utf-8"),
        f"{stem}.html": render_evaluation_html(report).encode("utf-8"),
    }


def render_index_files(index: DatasetIndex) -> dict[str, bytes]:
    """``{"index.json", "index.md", "index.html"}`` of one dataset, UTF-8 encoded."""
    return {
        "index.json": _json(index),
        "index.md": render_index_markdown(index).encode("utf-8"),
        "index.html": render_index_html(index).encode("utf-8"),
    }
