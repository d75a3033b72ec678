"""``visiontune status``: every run (or one dataset's) with its state, scores and decision, and which
model serves production."""

from __future__ import annotations

import argparse
import json
from typing import Any

from cli.common import (
    add_storage_arguments,
    command_settings,
    dataset_names,
    fail,
    no_runs_message,
    storage_errors,
    table_console,
)
from shared.pipeline.status import collect_status


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``status``."""
    status = subparsers.add_parser(
        "status",
        help="runs, states, scores and production, per dataset",
        description="Every run (or DATASET's) with its state, scores, decision, "
        "and which model serves production.",
    )
    status.add_argument("dataset", nargs="?", metavar="DATASET", help="only this dataset (default: all)")
    add_storage_arguments(status)
    status.set_defaults(handler=run_status)


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def status_table(status: dict[str, Any]) -> list[Any]:
    """Rich renderables (one table per dataset) for a ``collect_status`` result."""
    from rich.table import Table

    tables = []
    for entry in status["datasets"]:
        production = entry.get("production")
        caption = (
            f"production: {production['model']} ({production['deployment']}), version {production['version']}, "
            f"accuracy {_pct(production.get('accuracy'))}"
            if production
            else "production: none yet"
        )
        table = Table(
            title=f"[bold]{entry['dataset']}", caption=caption, title_justify="left", caption_justify="left"
        )
        table.add_column("version", no_wrap=True, min_width=16)
        table.add_column("state", no_wrap=True)
        for column in ("examples", "candidate", "baseline", "decision / last event"):
            table.add_column(column, overflow="fold")
        for run in entry["runs"]:
            scores = run.get("scores") or {}
            baseline_role = "incumbent" if "incumbent" in scores else "base"
            decision = run.get("decision")
            failure = run.get("failure")
            if failure:
                text = f"[red]{failure['stage']}: {failure['message']}"
            elif decision:
                text = decision["reason"]
            else:
                event = run.get("last_event") or {}
                progress = ", ".join(
                    f"{r} {p['scored']}/{p['total']}" for r, p in run["evaluation"].items() if not p["done"]
                )
                text = (event.get("detail") or "") + (f" [{progress}]" if progress else "")
            state_style = {
                "promoted": "green",
                "rejected": "yellow",
                "failed": "red",
                "over_budget": "red",
                "cancelled": "red",
            }.get(run["state"], "cyan")
            table.add_row(
                run["version"],
                f"[{state_style}]{run['state']}",
                str(sum(run.get("examples", {}).values())),
                _pct(scores.get("candidate")),
                f"{_pct(scores.get(baseline_role))} {baseline_role}" if baseline_role in scores else "—",
                text,
            )
        if entry.get("intake_failure"):
            failure = entry["intake_failure"]
            table.add_row(
                "(intake)", "[red]failed", "", "", "", f"[red]{failure['stage']}: {failure['message']}"
            )
        tables.append(table)
    return tables


@storage_errors
def run_status(args: argparse.Namespace) -> int:
    settings = command_settings(args.settings)
    status = collect_status(settings, args.dataset)
    with_runs, pushed = dataset_names(settings)
    shown = {entry["dataset"] for entry in status["datasets"]}
    if args.dataset:
        [entry] = status["datasets"]
        if not entry["runs"] and entry["production"] is None and entry["intake_failure"] is None:
            pending, message = no_runs_message(args.dataset, with_runs, pushed)
            if not pending:
                return fail(message)
            status["datasets"] = []
            status["pending"] = [args.dataset]
        else:
            status["pending"] = []
    else:
        status["pending"] = [name for name in pushed if name not in shown]
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    console = table_console()
    if not status["datasets"] and not status["pending"]:
        console.print("no datasets yet: drop one with `visiontune push DIR --dataset NAME`")
    for table in status_table(status):
        console.print(table)
    for name in status["pending"]:
        console.print(
            f"[bold]{name}[/bold]: pushed, no run yet (the functions host converts it when it sees the "
            "_READY marker or the .zip; is `visiontune local up` running?)"
        )
    return 0
