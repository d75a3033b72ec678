"""Where things live in blob storage: container names and blob paths, in one place.

The function triggers, the Event Grid filters (infra) and the pipeline all derive their paths from
these names, so they can never disagree.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

DATASETS_CONTAINER = "datasets"
TRAINING_CONTAINER = "training"
RUNS_CONTAINER = "runs"
REPORTS_CONTAINER = "reports"
ALL_CONTAINERS = (DATASETS_CONTAINER, TRAINING_CONTAINER, RUNS_CONTAINER, REPORTS_CONTAINER)

READY_MARKER = "_READY"
MANIFEST_NAME = "manifest.json"
REJECTED_NAME = "rejected.json"
SPLITS = ("train", "validation", "test")

# Blob-trigger path patterns (container/pattern), as the Functions host understands them.
DATASET_READY_PATH = f"{DATASETS_CONTAINER}/{{dataset}}/{READY_MARKER}"
DATASET_ARCHIVE_PATH = f"{DATASETS_CONTAINER}/{{dataset}}.zip"
TRAINING_MANIFEST_PATH = f"{TRAINING_CONTAINER}/{{dataset}}/{{version}}/{MANIFEST_NAME}"

# The queue of fan-out shards (shared/pipeline/fanout.py); the Functions host moves a message that failed
# SHARD_MAX_DEQUEUE_COUNT times (host.json extensions.queues.maxDequeueCount) to "<queue>-poison".
SHARD_QUEUE = "convert-shards"
SHARD_POISON_QUEUE = f"{SHARD_QUEUE}-poison"
SHARD_MAX_DEQUEUE_COUNT = 5

DATASET_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


def validate_dataset_name(name: str) -> str:
    """Return ``name`` if it is a usable dataset name, else raise ``ValueError`` saying why."""
    if not DATASET_NAME_RE.match(name):
        raise ValueError(
            f"invalid dataset name {name!r}: use 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return name


def dataset_prefix(dataset: str) -> str:
    """Blob prefix of everything of one dataset in a container: its drop (datasets), its versions
    (training), its runs (runs), its reports and index (reports)."""
    return f"{dataset}/"


def dataset_archive_blob(dataset: str) -> str:
    """Blob name (inside the datasets container) of a dataset dropped as one .zip archive."""
    return f"{dataset}.zip"


def training_prefix(dataset: str, version: str) -> str:
    """Blob prefix (inside the training container) of one converted dataset version."""
    return f"{dataset}/{version}/"


def cache_prefix(dataset: str) -> str:
    """Blob prefix (inside the training container) of a dataset's converted-image cache. Dataset names
    start with a letter or digit, so this never collides with a dataset's own folder."""
    return f"_cache/{dataset}/"


def shard_job_prefix(dataset: str, job: str) -> str:
    """Blob prefix (inside the training container) of one fanned-out conversion's plan, parts and markers."""
    return f"_shards/{dataset}/{job}/"


def run_blob(dataset: str, version: str) -> str:
    """Blob name (inside the runs container) of one run's durable state."""
    return f"{dataset}/{version}.json"


def side_prefix(document: str) -> str:
    """Blob prefix (inside the runs container) of the side blobs of a JSON document (a run's or a scheduled
    evaluation's scored examples): ``<dataset>/<version>.json`` -> ``<dataset>/<version>.d/``."""
    return document.removesuffix(".json") + ".d/"


def intake_receipt_blob(dataset: str, fingerprint: str) -> str:
    """Blob name (inside the runs container) of the receipt of a drop already converted."""
    return f"{dataset}/_intake/{fingerprint}.json"


def scheduled_prefix(dataset: str) -> str:
    """Blob prefix (inside the runs container) of a dataset's scheduled-evaluation documents."""
    return f"{dataset}/_scheduled/"


def report_prefix(dataset: str, version: str) -> str:
    """Blob prefix (inside the reports container) of one run's reports."""
    return f"{dataset}/{version}/"


def production_blob(dataset: str) -> str:
    """Blob name (inside the reports container) that says which model serves production."""
    return f"{dataset}/production.json"


def evaluations_prefix(dataset: str) -> str:
    """Blob prefix (inside the reports container) of scheduled evaluations."""
    return f"{dataset}/evaluations/"


def evaluation_stem(generated_at: datetime) -> str:
    """The file stem of a scheduled evaluation under ``evaluations_prefix``: UTC time, sortable, no ':'
    (``20260302T030000Z``)."""
    if generated_at.tzinfo is not None:
        generated_at = generated_at.astimezone(UTC)
    return generated_at.strftime("%Y%m%dT%H%M%SZ")


def match_blob_path(pattern: str, blob_path: str) -> dict[str, str] | None:
    """Match ``container/blob`` against a blob-trigger pattern such as ``datasets/{dataset}/_READY``.

    Returns the named parts, or None when the path does not match. ``{name}`` parts match one or more
    characters other than ``/``, so a marker nested deeper than the pattern says is not a match.
    """
    regex = ""
    for literal, name in re.findall(r"([^{]*)(?:\{(\w+)\})?", pattern):
        regex += re.escape(literal)
        if name:
            regex += f"(?P<{name}>[^/]+)"
    found = re.fullmatch(regex, blob_path)
    return found.groupdict() if found else None
