"""``visiontune demo`` (``make demo``): the whole loop on this machine, in a few minutes.

1. Start the local stack (Azurite, the Azure OpenAI emulator on a fast clock, the functions host that
   runs ``function_app.py``) in a temporary folder.
2. Export scikit-learn's bundled handwritten digits as an image folder: v1 = 60% of each label, v2 = all
   (v2 contains v1's files under the same names, so the hash split keeps them in the same split).
3. Push v1 (parallel upload, marker last) and drive the host: the blob triggers convert and start the
   fine-tuning (v2 crosses the demo's fan-out threshold: its intake is planned by ``dataset_ready`` and
   converted by ``convert_shard`` queue calls); the advance timer (fired with ``tick``) polls, deploys,
   evaluates, decides and promotes.
4. Push v2: the retrain is judged against the incumbent (v1's model) on v2's test split.
5. Re-evaluate production once (the daily timer), download every report to ``--out`` and print a summary.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from cli.events import event_line
from cli.push import push_dataset
from cli.report import download_reports
from local.emulator.server import EmulatorConfig
from local.sample_data import export_digits
from shared.events import read_events
from shared.pipeline.context import Pipeline
from shared.pipeline.scheduled import _documents
from shared.pipeline.store import RunStore
from shared.prediction import Predictor
from shared.reporting.formatting import ms_precise, p_value, pct, points
from shared.reporting.schema import RunReport
from shared.reporting.summary import classic_missing
from shared.settings import Settings

REPO_ROOT = Path(__file__).resolve().parent.parent
DATASET = "digits"
TICK_PAUSE_SECONDS = 0.3
RUN_TIMEOUT_SECONDS = 200.0
DEMO_SHARD_MIN_IMAGES = 1500
DEMO_SHARD_IMAGES = 900


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``demo``."""
    demo = subparsers.add_parser(
        "demo",
        help="the whole loop on this machine: drop digits, fine-tune, promote, retrain, judge",
        description="Start the local stack in a temporary folder, export scikit-learn's handwritten digits, push "
        "60% of them (v1), follow the run to a promoted model, push all of them (v2), show the retrain judged "
        "against the incumbent, and download every report to --out.",
    )
    demo.add_argument("--out", type=Path, default=Path("demo-out"), help="where the reports go (demo-out)")
    demo.add_argument(
        "--data", type=Path, default=None, help="keep the stack's state here (default: a temp dir)"
    )
    demo.add_argument("--v1-fraction", type=float, default=0.6, help="share of each label in v1 (0.6)")
    demo.add_argument(
        "--step-seconds", type=float, default=0.5, help="emulator clock: seconds per job status"
    )
    demo.add_argument("--json", action="store_true", help="print the summary as JSON")
    demo.set_defaults(handler=run_demo)


def _settings_for(stack: Any) -> Any:
    return Settings.model_validate(stack.settings)


def follow_run(
    stack: Any, settings: Any, console: Any, *, label: str, timeout: float = RUN_TIMEOUT_SECONDS
) -> Any:
    """Drive the host (blob triggers + the advance timer) until the newest run has ended and its report
    is written; prints each state change. Returns the run."""
    store = RunStore.from_settings(settings)
    deadline = time.monotonic() + timeout
    seen: set[tuple[str, str]] = set()
    started = time.monotonic()
    known = {r.version for r in store.list(DATASET)}
    run = None
    while time.monotonic() < deadline:
        stack.host.run_until_idle(timeout=120)
        runs = store.list(DATASET)
        fresh = [r for r in runs if r.version not in known]
        if fresh:
            run = fresh[-1]
            for transition in run.transitions:
                key = (transition.at.isoformat(), transition.detail)
                if key not in seen:
                    seen.add(key)
                    console.print(
                        f"  [dim]{time.monotonic() - started:6.1f}s[/dim] {label} "
                        f"[cyan]{transition.state:<10}[/cyan] {transition.detail}"
                    )
            if run.terminal and run.report_written_for == run.state.value:
                return run
        stack.host.tick("advance_runs")
        time.sleep(TICK_PAUSE_SECONDS)
    raise TimeoutError(f"the {label} run did not finish within {timeout:.0f} s")


def run_demo(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from local.stack import LocalStack

    console = Console()
    if not console.is_terminal:  # a log file or CI: do not fold every line at 80 columns
        console = Console(width=130)
    started = time.monotonic()
    temp = Path(tempfile.mkdtemp(prefix="visiontune-demo-")) if args.data is None else args.data
    config = EmulatorConfig(
        step_seconds=args.step_seconds, file_processing_seconds=0.5, deployment_seconds=1.0, record_requests=True
    )
    extra = {
        "VISIONTUNE_EVAL_TICK_SECONDS": "60",
        "VISIONTUNE_EVAL_CONCURRENCY": "8",
        "VISIONTUNE_RETRY_BASE_SECONDS": "1",
        "VISIONTUNE_ROLLBACK_WINDOW_HOURS": "0",
        "VISIONTUNE_EPOCHS": "2",
        # v2 (1,797 images) crosses the fan-out threshold and is converted by 2 convert_shard queue calls;
        # v1 (1,083) stays one call. The product's default threshold (20,000) is far above the digits.
        "VISIONTUNE_SHARD_MIN_IMAGES": str(DEMO_SHARD_MIN_IMAGES),
        "VISIONTUNE_SHARD_IMAGES": str(DEMO_SHARD_IMAGES),
    }
    summary: list[dict[str, Any]] = []
    try:
        console.rule("[bold]visiontune demo")
        console.print(f"local stack in {temp} (Azurite + Azure OpenAI emulator + functions host)")
        with LocalStack(
            temp / "stack", app_root=REPO_ROOT, emulator_config=config, start_host=False, extra_settings=extra
        ) as stack:
            settings = _settings_for(stack)
            assert stack.host is not None  # built by LocalStack.start()
            console.print(f"functions: {', '.join(f.name for f in stack.host.functions())}")
            v1 = export_digits(temp / "v1", size=64, fraction=args.v1_fraction)
            v2 = export_digits(temp / "v2", size=64)
            for label, folder in (("v1", v1), ("v2", v2)):
                images = sum(1 for p in folder.rglob("*.png"))
                console.rule(f"[bold]{label}: {images} images of handwritten digits")
                t0 = time.monotonic()
                pushed = push_dataset(settings, folder, DATASET)
                console.print(
                    f"pushed {pushed.uploaded} files ({pushed.unchanged} unchanged) "
                    f"in {time.monotonic() - t0:.1f} s; wrote {pushed.marker}"
                )
                run = follow_run(stack, settings, console, label=label)
                summary.append(_row(label, images, run, time.monotonic() - t0))
            console.rule("[bold]scheduled evaluation of production")
            stack.host.tick("scheduled_evaluation")
            for _ in range(40):
                if _scheduled_done(settings):
                    break
                stack.host.tick("advance_runs")
                time.sleep(TICK_PAUSE_SECONDS)
            out = args.out
            if out.exists():
                shutil.rmtree(out)
            files = download_reports(settings, DATASET, None, out)
            for row in summary:
                row["classic"] = classic_line(out / DATASET / row["version"] / "report.json")
            production = json.loads((out / DATASET / "production.json").read_text())
            fidelity = spec_check(stack.emulator.url)
            console.rule("[bold]the production model in use")
            predictions = classify_held_out(settings, v2)
            events = run_events(settings)
    finally:
        if args.data is None:
            shutil.rmtree(temp, ignore_errors=True)
    elapsed = time.monotonic() - started
    if args.json:
        print(
            json.dumps(
                {"runs": summary, "production": production, "reports": str(out), "seconds": elapsed, "spec_check": fidelity,
                 "predictions": predictions, "events": events},
                indent=2,
                default=str,
            )
        )
        return 0 if not fidelity["violations"] else 1
    table = Table(title="visiontune demo: digits", title_justify="left")
    for column in (
        "run",
        "images",
        "outcome",
        "converted",
        "reused",
        "shards",
        "candidate",
        "judged against",
        "baseline",
        "p-value",
        "minutes",
    ):
        table.add_column(column)
    for row in summary:
        table.add_row(
            row["run"],
            str(row["images"]),
            row["outcome"],
            str(row["converted"]),
            str(row["reused"]),
            str(row["shards"] or "-"),
            row["candidate"],
            row["against"],
            row["baseline"],
            row["p_value"],
            f"{row['seconds'] / 60:.1f}",
        )
    console.print(table)
    for row in summary:
        console.print(f"[bold]{row['run']}[/bold]: {row['reason']}")
        fanout = f"fanned out in {row['shards']} shards (convert_shard), " if row["shards"] else "one call, "
        console.print(
            f"  intake: {fanout}{row['converted']} images converted, {row['reused']} reused from the cache "
            f"in {row['intake_seconds']} s"
        )
        console.print(f"  classic baseline: {row['classic']}")
    console.print(production_line(production))
    scheduled = scheduled_line(out / DATASET)
    if scheduled:
        console.print(scheduled)
    index = out / DATASET / "index.html"
    console.print(f"{len(files)} report files in {out}/ — start with {index}")
    for row in summary:
        console.print(f"  {row['run']}: {out / DATASET / row['version'] / 'report.html'}")
    console.print(
        f"requests: {fidelity['data_plane']} data-plane and {fidelity['arm']} ARM requests, "
        f"{fidelity['undeclared']} not declared by the spec of their API version (docs/azure-fidelity.md)"
    )
    for line in fidelity["violations"][:10]:
        console.print(f"  [red]{line}[/red]")
    console.print("held-out test images classified with the production model (`visiontune predict`):")
    for p in predictions:
        confidence = "-" if p["confidence"] is None else f"{p['confidence']:.0%}"
        mark = "right" if p["label"] == p["truth"] else "WRONG"
        console.print(f"  {p['source']}: labelled {p['truth']}, answered {p['label']} ({mark}; confidence {confidence}; "
                      f"{p['latency_ms']:.0f} ms)")

    console.print(f"the run's events (`visiontune events {DATASET}`):")
    for event in events:
        console.print(f"  {event_line(event)}", markup=False)
    console.print(f"demo finished in {elapsed / 60:.1f} minutes")
    return 0 if not fidelity["violations"] else 1


def classify_held_out(settings: Any, folder: Path, count: int = 5) -> list[dict[str, Any]]:
    """Classify ``count`` held-out test images of the production version (one per label where possible)
    with the production deployment, as ``visiontune predict`` does."""
    predictor = Predictor(settings, DATASET)
    target = predictor.target()
    manifest = predictor.pipeline.manifest(DATASET, target.version)
    test_split = manifest.splits.get("test") if manifest is not None else None
    chosen: dict[str, str] = {}
    for path in test_split.files if test_split is not None else []:
        chosen.setdefault(path.split("/")[-2], path)
    paths = list(chosen.values())[:count]
    results = predictor.predict_many([(p, (folder / p).read_bytes()) for p in paths])
    return [{**r.to_json(), "truth": p.split("/")[-2]} for p, r in zip(paths, results, strict=True)]


def run_events(settings: Any) -> list[dict[str, Any]]:
    """The dataset's events from the journal (what `visiontune events digits` prints)."""
    return list(read_events(settings, dataset=DATASET, days=2))


def spec_check(emulator_url: str) -> dict[str, Any]:
    """What the emulator recorded of this demo, checked against the spec of each request's API version."""
    from local.emulator.admin import EmulatorAdmin
    from local.emulator.strict import spec_violations

    records = EmulatorAdmin(emulator_url).requests()
    violations = spec_violations(records)
    arm = sum(1 for r in records if r["surface"].startswith("arm"))
    return {"data_plane": len(records) - arm, "arm": arm, "undeclared": len(violations), "violations": violations}


def production_line(production: dict[str, Any]) -> str:
    """What serves production and the accuracy it was promoted with, naming the test set it was measured on
    (the index shows later measurements on newer test sets, which differ)."""
    return (
        f"production: {production['model']} as {production['deployment']} (version {production['version']}): "
        f"{pct(production['accuracy'])} when promoted, on version {production['version']}'s test set"
    )


def classic_line(report_json: Path) -> str:
    """The run report's classic baseline in one sentence: accuracy, latency, cost and the verdict, or why it is
    missing."""
    report = RunReport.model_validate_json(report_json.read_text(encoding="utf-8"))
    baseline = report.classic_baseline
    if baseline is None:
        return "not in the report"
    if report.classic is None:
        return classic_missing(report) or "missing"
    text = f"{pct(report.classic.metrics.accuracy)} accurate, {ms_precise(baseline.latency_ms_per_image)} per image"
    return f"{text}. {baseline.verdict.sentence}" if baseline.verdict else f"{text}."


def scheduled_line(dataset_reports: Path) -> str | None:
    """One sentence on the newest scheduled evaluation in the downloaded reports, or None if there is none."""
    evaluations = sorted((dataset_reports / "evaluations").glob("*.json"))
    if not evaluations:
        return None
    report = json.loads(evaluations[-1].read_text())
    production = report.get("production")
    if not production:
        return "scheduled evaluation: nothing in production, only the base model was evaluated"
    metrics = production["metrics"]
    text = (
        f"scheduled evaluation: production answered {metrics['correct']}/{metrics['n']} of version "
        f"{report['test_set_version']}'s test set correctly ({pct(metrics['accuracy'])})"
    )
    previous = report.get("previous_accuracy")
    if previous is not None:
        text += f", {points(metrics['accuracy'] - previous)} against the previous measurement"
    verdict = "a REGRESSION" if report.get("regression") else "no regression"
    return f"{text}: {verdict} — {evaluations[-1].with_suffix('.html')}"


def _scheduled_done(settings: Any) -> bool:
    documents = _documents(Pipeline(settings), DATASET)
    return bool(documents) and all(doc.done for doc in documents)


def _row(label: str, images: int, run: Any, seconds: float) -> dict[str, Any]:
    """One summary row, formatted exactly as the reports format the same numbers."""
    decision = run.decision
    baseline_role = decision.baseline_role if decision and decision.baseline_role else "base"
    baseline = run.scores.get(baseline_role)
    return {
        "run": label,
        "version": run.version,
        "images": images,
        "outcome": run.state.value,
        "converted": run.intake.get("images_converted", "-"),
        "reused": run.intake.get("images_reused", "-"),
        "intake_seconds": run.intake.get("seconds"),
        "shards": run.intake.get("shards", 0),
        "candidate": pct(run.scores.get("candidate")),
        "against": "incumbent" if baseline_role == "incumbent" else "base model",
        "baseline": pct(baseline),
        "p_value": p_value(decision.p_value if decision else None),
        "reason": decision.reason if decision else (run.failure.message if run.failure else run.state.value),
        "seconds": seconds,
    }
