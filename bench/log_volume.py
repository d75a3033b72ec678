"""``make log-volume``: how many log records one function invocation sends to Application Insights.

Starts the local stack (Azurite + the Azure OpenAI emulator + the local functions host, not started),
drops synthetic datasets of the given sizes, and runs ``dataset_ready`` and then ``training_ready`` on
each through the host, the way Event Grid would fire them. Every record the app's code emits at INFO
or above while its handler runs is counted, as the Functions Python worker forwards it: the worker puts
a handler on the root logger and sends every record at INFO and above to the host, which sends it to
Application Insights (so the Azure SDK's HTTP logging policy lines count unless something quiets them).

Attribution is by thread, as the worker does it for a synchronous function (the invocation id lives
in a thread-local while the handler runs): records from threads the handler did not run on are not
counted. Figures are printed, not asserted; ``tests/functions/test_log_volume.py`` asserts the bound.

    .venv/bin/python -m bench.log_volume --sizes 24 20 2000
"""

from __future__ import annotations

import argparse
import collections
import logging
import sys
import tempfile
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from local.emulator.server import EmulatorConfig

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Count:
    """Records at INFO or above one invocation emitted, by logger name."""

    function_name: str
    outcome: str = ""
    by_logger: collections.Counter[str] = field(default_factory=collections.Counter)
    records: list[logging.LogRecord] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.by_logger.values())


class _InvocationRecords(logging.Handler):
    """A root handler that keeps the records emitted on a thread while it runs a function handler."""

    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.current = threading.local()

    def emit(self, record: logging.LogRecord) -> None:
        count: Count | None = getattr(self.current, "count", None)
        if count is not None:
            count.by_logger[record.name] += 1
            count.records.append(record)


@contextmanager
def counting_records(host: Any) -> Iterator[_InvocationRecords]:
    """Count what ``host``'s function handlers log, with the root logger at INFO as in the worker."""
    handler = _InvocationRecords()
    root = logging.getLogger()
    previous_level = root.level
    root.setLevel(logging.INFO)
    root.addHandler(handler)
    original_call = host._call

    def call(info: Any, trigger_value: Any, binding_data: dict[str, str], *more: Any) -> Any:
        count = handler.current.count = host.counting_for
        try:
            return original_call(info, trigger_value, binding_data, *more)
        finally:
            handler.current.count = None
            del count

    host._call = call
    try:
        yield handler
    finally:
        host._call = original_call
        root.removeHandler(handler)
        root.setLevel(previous_level)


def synthetic_drop(folder: Path, images: int) -> Path:
    """``images`` distinct 16x16 PNGs under two labels (fast to make and to convert)."""
    from PIL import Image

    for index in range(images):
        label = "dark" if index % 2 else "light"
        base = 40 if label == "dark" else 200
        pixels = bytes(
            (base + (index >> shift) % 50) % 256 for shift in (0, 3, 6) for _ in range(1)
        )
        image = Image.new("RGB", (16, 16), tuple(pixels))  # type: ignore[arg-type]
        image.putpixel((index % 16, (index // 16) % 16), (index % 256, (index // 256) % 256, 7))
        path = folder / label / f"{index:05d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path)
    return folder


def upload_drop(service: Any, dataset: str, folder: Path) -> None:
    """Upload ``folder`` to ``datasets/<dataset>/`` (8 in parallel), then the ``_READY`` marker."""
    container = service.get_container_client("datasets")
    paths = sorted(folder.rglob("*.png"))

    def upload(path: Path) -> None:
        container.upload_blob(f"{dataset}/{path.relative_to(folder).as_posix()}", path.read_bytes(), overwrite=True)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(upload, paths))
    container.upload_blob(f"{dataset}/_READY", b"", overwrite=True)


def measure(stack: Any, dataset: str, folder: Path) -> list[Count]:
    """Upload ``folder`` as ``dataset`` and run dataset_ready, then training_ready on its manifest."""
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient.from_connection_string(stack.settings["AzureWebJobsStorage"])
    upload_drop(service, dataset, folder)

    host = stack.host
    counts = []
    with counting_records(host):
        host.counting_for = Count("dataset_ready")
        invocation = host.tick("dataset_ready", f"datasets/{dataset}/_READY")
        host.counting_for.outcome = invocation.outcome
        counts.append(host.counting_for)
        manifests = [
            b.name for b in service.get_container_client("training").list_blobs(name_starts_with=f"{dataset}/")
            if b.name.endswith("/manifest.json")
        ]
        if manifests:
            host.counting_for = Count("training_ready")
            invocation = host.tick("training_ready", f"training/{manifests[0]}")
            host.counting_for.outcome = invocation.outcome
            counts.append(host.counting_for)
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[24, 20, 2000], help="images per drop")
    parser.add_argument("--show", type=int, default=6, help="loggers to list per invocation")
    parser.add_argument("--records", action="store_true", help="print each record (up to 5) with its dimensions")
    args = parser.parse_args(argv)

    from local.stack import LocalStack

    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        with LocalStack(
            work / "stack",
            app_root=REPO,
            emulator_config=EmulatorConfig(step_seconds=0.1, file_processing_seconds=0.1),
            start_host=False,
            extra_settings={"VISIONTUNE_CONVERT_WORKERS": "1"},
        ) as stack:
            print(f"{'images':>7}  {'function':<15} {'outcome':<10} {'records at INFO+':>16}  top loggers")
            for size in args.sizes:
                folder = synthetic_drop(work / f"drop-{size}", size)
                for count in measure(stack, f"logs{size}", folder):
                    top = ", ".join(f"{name} {n}" for name, n in count.by_logger.most_common(args.show))
                    print(f"{size:>7}  {count.function_name:<15} {count.outcome:<10} {count.total:>16}  {top}")
                    for record in count.records[:5] if args.records else []:
                        dimensions = {k: v for k, v in vars(record).items() if k.startswith("visiontune.")}
                        print(f"         {record.levelname} {record.getMessage()}  {dimensions}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
