"""``visiontune push | status | report | demo``: drop a dataset, watch the runs, read the reports.

They talk to storage only (the pipeline runs in the function app), using the settings from
``local.settings.json`` (``--settings``; what ``visiontune local up`` writes) and the environment.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_SETTINGS = Path("local.settings.json")
UPLOAD_WORKERS = 8


# --------------------------------------------------------------------------------------------------
# argument parsing
# --------------------------------------------------------------------------------------------------
def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``push``, ``status``, ``report`` and ``demo``."""

    def common(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--settings",
            type=Path,
            default=None,
            help="local.settings.json to read (default: ./local.settings.json, else the one `visiontune "
            "local up` wrote in this checkout; the environment wins)",
        )
        parser.add_argument("--json", action="store_true", help="print JSON for scripts instead of tables")

    push = subparsers.add_parser(
        "push",
        help="upload an image folder (or .zip) as a dataset and start the pipeline",
        description="Upload DIR (an ImageFolder: <label>/<image>, or train|validation|test/<label>/<image>) to "
        "datasets/<NAME>/ with parallel uploads (unchanged files are skipped, files gone from DIR are removed), "
        "then write the _READY marker, which starts the pipeline. A .zip is uploaded as datasets/<NAME>.zip.",
    )
    push.add_argument("source", type=Path, metavar="DIR", help="image folder or .zip archive")
    push.add_argument(
        "--dataset", required=True, metavar="NAME", help="dataset name (letters, digits, . _ -)"
    )
    push.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="per-dataset override written into the marker (e.g. epochs=3, budget_usd=20, "
        "prompt='...'); repeatable",
    )
    push.add_argument(
        "--workers", type=int, default=UPLOAD_WORKERS, help=f"parallel uploads ({UPLOAD_WORKERS})"
    )
    push.add_argument(
        "--keep-remote", action="store_true", help="do not delete blobs of files that are no longer in DIR"
    )
    common(push)
    push.set_defaults(handler=run_push)

    status = subparsers.add_parser(
        "status",
        help="runs, states, scores and production, per dataset",
        description="Every run (or DATASET's) with its state, scores, decision, "
        "and which model serves production.",
    )
    status.add_argument("dataset", nargs="?", metavar="DATASET", help="only this dataset (default: all)")
    common(status)
    status.set_defaults(handler=run_status)

    report = subparsers.add_parser(
        "report",
        help="show or download a run's report",
        description="Print a run's report (Markdown), or download report.json/.md/"
        ".html (and the dataset index) with --out. VERSION defaults to "
        "the newest run.",
    )
    report.add_argument("dataset", metavar="DATASET", help="the dataset name given to `visiontune push`")
    report.add_argument(
        "version", nargs="?", metavar="VERSION", help="run version, or a unique prefix of it (default: the newest)"
    )
    report.add_argument("--out", type=Path, default=None, help="folder to download the report files into")
    common(report)
    report.set_defaults(handler=run_report)

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


class CommandError(Exception):
    """A problem the user can fix; its message is one sentence saying what to do (printed, exit code 2)."""


def default_settings_path() -> Path:
    """``./local.settings.json`` when it exists, else the one ``visiontune local up`` writes in this checkout
    (so ``status`` works from any folder while the stack runs)."""
    from cli.local import _default_app_root

    if DEFAULT_SETTINGS.is_file():
        return DEFAULT_SETTINGS
    return _default_app_root() / DEFAULT_SETTINGS.name


def _load_settings(path: Path | None):
    """The settings for a storage command; ``CommandError`` (saying what to do) when there are none usable."""
    import pydantic

    from shared.settings import SettingsError, load_settings

    explicit = path is not None
    path = path if explicit else default_settings_path()
    if explicit and not path.is_file():
        raise CommandError(
            f"no settings file at {path}: pass the local.settings.json that `visiontune local up` wrote "
            "(in the folder it was started from), or leave out --settings"
        )
    try:
        settings = load_settings(local_settings=path)
        settings.require_storage()
    except json.JSONDecodeError as error:
        raise CommandError(
            f"{path} is not valid JSON (line {error.lineno}, column {error.colno}): fix it, or delete it and "
            "start `visiontune local up` again to write a new one"
        ) from None
    except pydantic.ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first.get("loc", ())) or "a setting"
        raise CommandError(f"invalid setting {where} in {path} or the environment: {first['msg']}") from None
    except SettingsError as error:
        if path.is_file():
            raise CommandError(f"{error} (in {path} or the environment)") from None
        raise CommandError(
            "no local.settings.json here and no storage settings in the environment: start the local stack "
            "with `visiontune local up` (it writes local.settings.json), or pass --settings PATH"
        ) from None
    _check_storage_reachable(settings, path)
    return settings


def _check_storage_reachable(settings: Any, path: Path, timeout: float = 3.0) -> None:
    """Fail in seconds, not after the SDK's minute of retries, when nothing listens at the blob endpoint
    (typically: the local stack that wrote the settings has been stopped)."""
    import socket
    from urllib.parse import urlparse

    from shared.storage import blob_service_client

    url = urlparse(blob_service_client(settings).url)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=timeout).close()
    except OSError as error:
        raise CommandError(
            f"cannot reach blob storage at {url.scheme}://{url.netloc} ({error.strerror or error}): start the "
            f"local stack with `visiontune local up` (the settings came from {path}), or pass --settings PATH"
        ) from None


def _fail(message: str) -> int:
    print(f"visiontune: {message}", file=sys.stderr)
    return 2


def _storage_errors(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Turn the failures a user can meet (bad settings, storage down or refusing) into one sentence."""

    def wrapped(args: argparse.Namespace) -> int:
        from azure.core.exceptions import AzureError, ServiceRequestError

        try:
            return handler(args)
        except CommandError as error:
            return _fail(str(error))
        except ServiceRequestError as error:
            return _fail(f"blob storage stopped answering ({error.message}): is `visiontune local up` still running?")
        except AzureError as error:
            first_line = (error.message or str(error)).strip().splitlines()[0]
            return _fail(f"blob storage refused the request: {first_line}")

    wrapped.__name__ = handler.__name__
    wrapped.__doc__ = handler.__doc__
    return wrapped


def _dataset_names(settings: Any) -> tuple[list[str], list[str]]:
    """``(datasets with runs, datasets pushed to the drop zone)``, each sorted."""
    from shared.layout import DATASETS_CONTAINER
    from shared.pipeline.store import RunStore
    from shared.storage import container_client

    with_runs = sorted(RunStore.from_settings(settings).datasets())
    pushed = set()
    for item in container_client(settings, DATASETS_CONTAINER).walk_blobs(delimiter="/"):
        name = item.name
        if name.endswith("/"):
            pushed.add(name[:-1])
        elif name.endswith(".zip"):
            pushed.add(name[: -len(".zip")])
    return with_runs, sorted(pushed)


def _no_runs_message(dataset: str, with_runs: list[str], pushed: list[str]) -> tuple[bool, str]:
    """``(is_pending, sentence)`` for a dataset without runs: pushed and waiting, or unknown."""
    if dataset in pushed:
        return True, (
            f"dataset {dataset!r} was pushed but has no run yet: the functions host converts it when it sees "
            f"the _READY marker (or the .zip); check that `visiontune local up` is running and try again in a moment"
        )
    known = sorted(set(with_runs) | set(pushed))
    listing = f"known datasets are {', '.join(known)}" if known else "there are no datasets yet"
    return False, f"no dataset named {dataset!r}: {listing}; push one with `visiontune push DIR --dataset NAME`"


# --------------------------------------------------------------------------------------------------
# push
# --------------------------------------------------------------------------------------------------
@dataclass
class PushResult:
    dataset: str
    source: str
    uploaded: int = 0
    unchanged: int = 0
    deleted: int = 0
    bytes_uploaded: int = 0
    marker: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    archive: bool = False


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``["epochs=3", "prompt=What digit?"]`` -> validated overrides (JSON values where they parse)."""
    from shared.pipeline.models import RunOverrides

    values: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set expects KEY=VALUE, got {pair!r}")
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        values[key.strip()] = value
    RunOverrides.parse_marker(json.dumps(values).encode())  # raises OverridesError with the details
    return values


def _md5(path: Path) -> bytes:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1024 * 1024), b""):
            digest.update(chunk)
    return digest.digest()


def push_dataset(
    settings: Any,
    source: Path,
    dataset: str,
    *,
    overrides: dict[str, Any] | None = None,
    workers: int = UPLOAD_WORKERS,
    delete_missing: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> PushResult:
    """Upload ``source`` (folder or .zip) as dataset ``dataset``; for a folder, the ``_READY`` marker (with
    ``overrides`` as its JSON body) is written last. ``progress(bytes_done, bytes_total)`` is called as
    files go up. Files whose MD5 matches the blob already there are skipped."""
    from azure.storage.blob import ContentSettings

    from shared.layout import DATASETS_CONTAINER, READY_MARKER, validate_dataset_name
    from shared.storage import container_client

    validate_dataset_name(dataset)
    container = container_client(settings, DATASETS_CONTAINER)
    result = PushResult(dataset=dataset, source=str(source), overrides=dict(overrides or {}))
    if source.is_file():
        if source.suffix.lower() != ".zip":
            raise ValueError(f"{source} is a file but not a .zip archive")
        if overrides:
            raise ValueError(
                "--set needs a folder: a .zip starts the pipeline without a marker; put the "
                "overrides in a _READY marker by pushing a folder instead"
            )
        size = source.stat().st_size
        with source.open("rb") as handle:
            container.upload_blob(
                f"{dataset}.zip",
                _ProgressReader(handle, size, progress),
                overwrite=True,
                length=size,
                max_concurrency=max(1, workers),
            )
        result.uploaded, result.bytes_uploaded, result.archive = 1, size, True
        return result
    if not source.is_dir():
        raise FileNotFoundError(f"no such folder or .zip: {source}")

    local = {p.relative_to(source).as_posix(): p for p in sorted(source.rglob("*")) if p.is_file()}
    local.pop(READY_MARKER, None)
    if not local:
        raise ValueError(
            f"{source} holds no files: put the images in one folder per label (<label>/<image>), then push again"
        )
    prefix = f"{dataset}/"
    remote = {b.name[len(prefix) :]: b for b in container.list_blobs(name_starts_with=prefix)}
    remote_marker = remote.pop(READY_MARKER, None)
    del remote_marker  # replaced below, after the files
    todo = []
    for relative, path in local.items():
        existing = remote.get(relative)
        if existing is not None and existing.size == path.stat().st_size:
            md5 = existing.content_settings.content_md5 if existing.content_settings else None
            if md5 and bytes(md5) == _md5(path):
                result.unchanged += 1
                continue
        todo.append((relative, path))
    total = sum(p.stat().st_size for _, p in todo)
    done = 0

    def upload(item: tuple[str, Path]) -> int:
        relative, path = item
        data = path.read_bytes()
        container.upload_blob(
            prefix + relative,
            data,
            overwrite=True,
            content_settings=ContentSettings(content_md5=hashlib.md5(data, usedforsecurity=False).digest()),
        )
        return len(data)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for size in pool.map(upload, todo):
            done += size
            result.uploaded += 1
            if progress:
                progress(done, total)
    result.bytes_uploaded = done
    if delete_missing:
        for relative in sorted(set(remote) - set(local)):
            container.delete_blob(prefix + relative)
            result.deleted += 1
    body = json.dumps(result.overrides, sort_keys=True).encode() if result.overrides else b""
    container.upload_blob(prefix + READY_MARKER, body, overwrite=True)
    result.marker = f"{DATASETS_CONTAINER}/{prefix}{READY_MARKER}"
    return result


class _ProgressReader:
    """A read-only stream that reports how much has been read (for the .zip upload's progress bar)."""

    def __init__(self, handle: Any, total: int, progress: Callable[[int, int], None] | None) -> None:
        self._handle, self._total, self._progress, self._done = handle, total, progress, 0

    def read(self, size: int = -1) -> bytes:
        data = self._handle.read(size)
        self._done += len(data)
        if self._progress:
            self._progress(self._done, self._total)
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)


@_storage_errors
def run_push(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    from shared.pipeline.models import OverridesError

    if not args.source.exists():
        return _fail(f"no such folder or .zip: {args.source}")
    try:
        overrides = parse_overrides(args.overrides)
        settings = _load_settings(args.settings)
        console = Console(stderr=True)
        with Progress(
            TextColumn("[bold]uploading"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=console,
            disable=args.json or not console.is_terminal,
        ) as bar:
            task = bar.add_task("upload", total=None)

            def progress(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            result = push_dataset(
                settings,
                args.source,
                args.dataset,
                overrides=overrides,
                workers=args.workers,
                delete_missing=not args.keep_remote,
                progress=progress,
            )
    except (OverridesError, ValueError, FileNotFoundError) as error:
        return _fail(str(error))
    if args.json:
        print(json.dumps(asdict(result), indent=2))
        return 0
    what = f"datasets/{result.dataset}.zip" if result.archive else f"datasets/{result.dataset}/"
    print(
        f"pushed {result.source} -> {what}: {result.uploaded} uploaded "
        f"({result.bytes_uploaded / 1e6:.1f} MB), {result.unchanged} unchanged, {result.deleted} removed"
    )
    if result.marker:
        extra = f" with overrides {json.dumps(result.overrides)}" if result.overrides else ""
        print(
            f"wrote {result.marker}{extra}: the pipeline starts now. Follow it with `visiontune status {result.dataset}`."
        )
    return 0


# --------------------------------------------------------------------------------------------------
# status
# --------------------------------------------------------------------------------------------------
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


def _console() -> Any:
    """A console for tables: the terminal's width, or a wide one when the output is a file or a pipe (so
    long version ids and messages are not folded at 80 columns)."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=140)


@_storage_errors
def run_status(args: argparse.Namespace) -> int:
    from shared.pipeline.status import collect_status

    settings = _load_settings(args.settings)
    status = collect_status(settings, args.dataset)
    with_runs, pushed = _dataset_names(settings)
    shown = {entry["dataset"] for entry in status["datasets"]}
    if args.dataset:
        [entry] = status["datasets"]
        if not entry["runs"] and entry["production"] is None and entry["intake_failure"] is None:
            pending, message = _no_runs_message(args.dataset, with_runs, pushed)
            if not pending:
                return _fail(message)
            status["datasets"] = []
            status["pending"] = [args.dataset]
        else:
            status["pending"] = []
    else:
        status["pending"] = [name for name in pushed if name not in shown]
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    console = _console()
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


# --------------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------------
def download_reports(settings: Any, dataset: str, version: str | None, out: Path) -> list[Path]:
    """Download ``reports/<dataset>/<version>/report.*`` (and the dataset's index.*) into ``out``."""
    from shared.layout import REPORTS_CONTAINER
    from shared.storage import container_client

    container = container_client(settings, REPORTS_CONTAINER)
    prefixes = [f"{dataset}/{version}/"] if version else [f"{dataset}/"]
    written = []
    for prefix in prefixes:
        for blob in container.list_blobs(name_starts_with=prefix):
            target = out / blob.name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(container.download_blob(blob.name).readall())
            written.append(target)
    for name in ("index.json", "index.md", "index.html", "production.json"):
        blob = container.get_blob_client(f"{dataset}/{name}")
        if version and blob.exists():
            target = out / dataset / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(blob.download_blob().readall())
            written.append(target)
    return written


def resolve_version(settings: Any, dataset: str, version: str | None) -> str:
    """The run version ``version`` names (exactly or as a unique prefix), or the newest run's when it is
    None. ``CommandError`` saying what exists when there is no such run."""
    from shared.pipeline.store import RunStore

    versions = [run.version for run in RunStore.from_settings(settings).list(dataset)]
    if not versions:
        raise CommandError(_no_runs_message(dataset, *_dataset_names(settings))[1])
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


@_storage_errors
def run_report(args: argparse.Namespace) -> int:
    from rich.markdown import Markdown

    from shared.layout import REPORTS_CONTAINER, report_prefix
    from shared.storage import container_client, read_json

    settings = _load_settings(args.settings)
    version = resolve_version(settings, args.dataset, args.version)
    container = container_client(settings, REPORTS_CONTAINER)
    report = read_json(container, report_prefix(args.dataset, version) + "report.json")
    if report is None:
        return _fail(
            f"no report for {args.dataset}/{version} yet (reports are written when a run ends; "
            f"see `visiontune status {args.dataset}`)"
        )
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
    _console().print(Markdown(markdown))
    return 0


# --------------------------------------------------------------------------------------------------
# demo
# --------------------------------------------------------------------------------------------------
def run_demo(args: argparse.Namespace) -> int:
    from cli.demo import run_demo as demo

    return demo(args)
