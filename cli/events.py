"""``visiontune events [DATASET] [--follow] [--days N] [--json]``: what happened, from the event journal."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from cli.common import command_settings, storage_errors
from shared.events import read_events

FOLLOW_POLL_SECONDS = 2.0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``events``."""
    parser = subparsers.add_parser(
        "events",
        help="the events published (converted, training started, promoted, rejected, failed, ...)",
        description="The CloudEvents the pipeline published, oldest first, from the journal in storage "
        "(reports/_events/<day>.jsonl; on Azure they also go to the Event Grid topic).",
    )
    parser.add_argument("dataset", nargs="?", metavar="DATASET", help="only this dataset's events")
    parser.add_argument("--days", type=int, default=7, help="how many UTC days back (7)")
    parser.add_argument("--follow", "-f", action="store_true", help="keep printing new events (Ctrl+C stops)")
    parser.add_argument("--settings", type=Path, default=None, help="local.settings.json to read")
    parser.add_argument("--json", action="store_true", help="one CloudEvent (JSON) per line")
    parser.set_defaults(handler=run_events)


def event_line(event: dict[str, Any]) -> str:
    """One event as a line: time, type, subject, detail."""
    data = event.get("data") or {}
    detail = data.get("detail") or ""
    if data.get("hourly_cost_usd"):
        detail += f" (deployment kept: ${data['hourly_cost_usd']:.2f}/hour)"
    kind = str(event.get("type", "")).removeprefix("visiontune.")
    return f"{event.get('time', '')[:19]}  {kind:<22} {event.get('subject', '')}  {detail}".rstrip()


def run_events(args: argparse.Namespace) -> int:
    @storage_errors
    def run(args: argparse.Namespace) -> int:
        settings = command_settings(args.settings)
        seen: set[str] = set()

        def show(events: Any) -> None:
            for event in events:
                if event["id"] in seen:
                    continue
                seen.add(event["id"])
                print(json.dumps(event) if args.json else event_line(event), flush=True)

        show(read_events(settings, dataset=args.dataset, days=args.days))
        if not seen and not args.follow and not args.json:
            print("no events yet" + (f" for {args.dataset}" if args.dataset else ""))
        while args.follow:
            time.sleep(FOLLOW_POLL_SECONDS)
            show(read_events(settings, dataset=args.dataset, days=2))
        return 0

    return run(args)
