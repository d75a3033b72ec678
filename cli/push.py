"""``visiontune push``: upload an image folder (or .zip) as a dataset (parallel, unchanged files skipped,
the ``_READY`` marker last), which starts the pipeline."""

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

from cli.common import add_storage_arguments, command_settings, fail, storage_errors
from shared.layout import DATASETS_CONTAINER, READY_MARKER, validate_dataset_name
from shared.pipeline.overrides import RENAMED_OVERRIDES, OverridesError, RunOverrides
from shared.storage.clients import container_client

UPLOAD_WORKERS = 8


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``push``."""
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
        help="per-dataset override written into the marker, named as the setting it overrides "
        "(e.g. n_epochs=3, max_run_usd=20, prompt='...'); repeatable",
    )
    push.add_argument(
        "--workers", type=int, default=UPLOAD_WORKERS, help=f"parallel uploads ({UPLOAD_WORKERS})"
    )
    push.add_argument(
        "--keep-remote", action="store_true", help="do not delete blobs of files that are no longer in DIR"
    )
    add_storage_arguments(push)
    push.set_defaults(handler=run_push)


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


def parse_overrides(pairs: list[str]) -> tuple[dict[str, Any], list[str]]:
    """``["n_epochs=3", "prompt=What digit?"]`` -> (validated overrides, JSON values where they parse;
    warnings). An old key name (``epochs``) is written under its new name (``n_epochs``), with a warning."""
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
    parsed = RunOverrides.parse_marker(json.dumps(values).encode())  # OverridesError with the details
    renamed = {old: new for old, new in RENAMED_OVERRIDES.items() if old in values}
    return {renamed.get(key, key): value for key, value in values.items()}, parsed.warnings


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
            # the SDK declares content_md5 as a bytearray (and base64-encodes whatever it gets)
            content_settings=ContentSettings(content_md5=bytearray(hashlib.md5(data, usedforsecurity=False).digest())),
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
        data: bytes = self._handle.read(size)
        self._done += len(data)
        if self._progress:
            self._progress(self._done, self._total)
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)


@storage_errors
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

    if not args.source.exists():
        return fail(f"no such folder or .zip: {args.source}")
    try:
        overrides, warnings = parse_overrides(args.overrides)
        for warning in warnings:
            print(f"visiontune push: warning: {warning}", file=sys.stderr)
        settings = command_settings(args.settings)
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
        return fail(str(error))
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
