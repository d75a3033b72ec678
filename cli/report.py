"""``visiontune report``: print a run's report, or download its files (and the dataset's index)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from cli.common import (
    CommandError,
    add_storage_arguments,
    command_settings,
    dataset_names,
    fail,
    no_runs_message,
    storage_errors,
    table_console,
)
from shared.layout import REPORTS_CONTAINER, dataset_prefix, report_prefix
from shared.pipeline.store import RunStore
from shared.storage.clients import container_client
from shared.storage.readers import read_json


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``report``."""
    report = subparsers.add_parser(
        "report",
        help="show or download a run's report",
        description="Print a run's report (Markdown), or download report.json/.md/"
        ".html (and the dataset index) with --out. VERSION defaults to "
        "the newest run.",
    )
    report.add_argument("dataset", metavar="DATASET", help="the dataset name given to `visiontune push`")
    report.add_argument(
        "version",
        nargs="?",
        metavar="VERSION",
        help="run version, or a unique prefix of it (default: the newest)",
    )
    report.add_argument("--out", type=Path, default=None, help="folder to download the report files into")
    report.add_argument(
        "--suspects",
        action="store_true",
        help="print only the review queue: test images both models call the same other label (likely mislabelled)",
    )
    add_storage_arguments(report)
    report.set_defaults(handler=run_report)


def download_reports(settings: Any, dataset: str, version: str | None, out: Path) -> list[Path]:
    """Download ``reports/<dataset>/<version>/report.*`` (and the dataset's index.*) into ``out``."""
    container = container_client(settings, REPORTS_CONTAINER)
    prefixes = [report_prefix(dataset, version)] if version else [dataset_prefix(dataset)]
    written = []
    for prefix in prefixes:
        for blob in container.list_blobs(name_starts_with=prefix):
            target = out / blob.name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(container.download_blob(blob.name).readall())
            written.append(target)
    for name in ("index.json", "index.md", "index.html", "production.json"):
        client = container.get_blob_client(dataset_prefix(dataset) + name)
        if version and client.exists():
            target = out / dataset / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(client.download_blob().readall())
            written.append(target)
    return written


def resolve_version(settings: Any, dataset: str, version: str | None) -> str:
    """The run version ``version`` names (exactly or as a unique prefix), or the newest run's when it is
    None. ``CommandError`` saying what exists when there is no such run."""
    versions = [run.version for run in RunStore.from_settings(settings).list(dataset)]
    if not versions:
        raise CommandError(no_runs_message(dataset, *dataset_names(settings))[1])
    if version is None:
        return versions[-1]
    if version in versions:
        return version
    matches = [v for v in versions if v.startswith(version)]
    if len(matches) == 1:
        return matches[0]
    what = "matches several" if matches else "is not one"
    raise CommandError(
        f"{version!r} {what} of the runs of {dataset!r}: its versions are {', '.join(matches or versions)} "
        f"(see `visiontune status {dataset}`)"
    )


@storage_errors
def run_report(args: argparse.Namespace) -> int:
    from rich.markdown import Markdown

    settings = command_settings(args.settings)
    version = resolve_version(settings, args.dataset, args.version)
    container = container_client(settings, REPORTS_CONTAINER)
    report = read_json(container, report_prefix(args.dataset, version) + "report.json")
    if report is None:
        return fail(
            f"no report for {args.dataset}/{version} yet (reports are written when a run ends; "
            f"see `visiontune status {args.dataset}`)"
        )
    if args.suspects:
        return print_suspects(args.dataset, version, report.get("suspects") or [], as_json=args.json)
    if args.out is not None:
        files = download_reports(settings, args.dataset, version, args.out)
        if args.json:
            print(
                json.dumps(
                    {"dataset": args.dataset, "version": version, "files": [str(f) for f in files]}, indent=2
                )
            )
        else:
            html = next((f for f in files if f.name == "report.html"), None)
            print(f"downloaded {len(files)} file(s) to {args.out}" + (f"; open {html}" if html else ""))
        return 0
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    markdown = container.download_blob(report_prefix(args.dataset, version) + "report.md").readall().decode()
    table_console().print(Markdown(markdown))
    return 0


def print_suspects(dataset: str, version: str, suspects: list[dict[str, Any]], *, as_json: bool) -> int:
    """The review queue of a report: one line per image (JSON lines with ``--json``, thumbnails left out)."""
    if as_json:
        for suspect in suspects:
            print(json.dumps({k: v for k, v in suspect.items() if k != "thumbnail"}))
        return 0
    if not suspects:
        print(f"{dataset}/{version}: no suspect labels (no test image that both models call the same other label)")
        return 0
    other = suspects[0].get("other_role", "other")
    print(f"{dataset}/{version}: {len(suspects)} suspect label(s), most confident first "
          f"(candidate and {other} agree on another label; thumbnails in report.html)")
    for s in suspects:
        confidence = "-" if s.get("confidence") is None else f"{s['confidence']:.0%}"
        print(f"{s.get('source_path') or s['custom_id']}\tlabelled {s['label']}\tboth say {s['answer']}\t{confidence}"
              f"\t(candidate: {s['candidate_answer']!r}, {other}: {s['other_answer']!r})")
    return 0
