"""``accept_dataset``: a dataset was dropped (a ``_READY`` marker or a ``.zip``). Convert it by streaming
from the drop zone to the training container, create its run, and publish the version (manifest last,
which fires ``training_ready``).

Replays are harmless: the version is a digest of the source files and the conversion settings, so the
same drop converts to the same version, the run already exists, and nothing is published twice.
The budget is not part of the version: dropping the marker again for a run that stopped ``over_budget``
checks the budget again with the new marker and the current settings (``recheck_over_budget``); for a run
that failed or was cancelled it restarts the run from where it stopped (``retry_run``).
A problem with the drop itself (a marker that is not valid JSON, a dataset that cannot train) is
written as a failure report under ``reports/<dataset>/intake/`` and the call returns normally: retrying
would fail the same way, so the trigger must not retry it into the poison queue.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Concatenate, ParamSpec

from shared.aoai.models import base_model_problem
from shared.conversion.cache import ImageCache
from shared.conversion.converter import convert_dataset
from shared.conversion.images import image_memory_budget
from shared.conversion.options import ConvertOptions, DatasetError
from shared.conversion.sources import DatasetSource, ZipSource
from shared.layout import (
    MANIFEST_NAME,
    dataset_archive_blob,
    dataset_prefix,
    intake_receipt_blob,
    report_prefix,
    validate_dataset_name,
)
from shared.pipeline.context import Pipeline
from shared.pipeline.documents import IntakeReceipt, Manifest, manifest_from
from shared.pipeline.fanout_plan import plan_fanout
from shared.pipeline.intake_cache import collect_cache, image_cache
from shared.pipeline.models import Run, utcnow
from shared.pipeline.overrides import OverridesError, RunOverrides
from shared.pipeline.reports import INTAKE_VERSION, publish_intake_failure
from shared.pipeline.retry import retry_run
from shared.pipeline.stages.budget import fill_from_manifest, recheck_over_budget
from shared.pipeline.stored import parse_document
from shared.pipeline.supersede import supersede_older_runs
from shared.reporting.schema import Transition
from shared.settings import Settings
from shared.storage.readers import BlobDatasetSource, open_blob_reader
from shared.storage.writers import BlobArtifactSink
from shared.telemetry import note, set_run_state

if TYPE_CHECKING:
    from azure.storage.blob import BlobClient


log = logging.getLogger(__name__)

REDROP_REASON = "the dataset was dropped again"


@dataclass(frozen=True)
class IntakeResult:
    dataset: str
    version: str
    published: bool  # False: this version was already there (the same data dropped again)
    run_created: bool
    examples: int
    # Fan-out: the drop is converted by these shard messages (sent to SHARD_QUEUE by the trigger's
    # output binding); nothing is published yet, ``version`` is empty.
    shard_messages: tuple[str, ...] = ()


def convert_options(settings: Settings, overrides: RunOverrides) -> ConvertOptions:
    """The converter's options from the (overridden) settings."""
    effective = overrides.apply(settings)
    return ConvertOptions(
        max_side=effective.max_side,
        quality=effective.jpeg_quality,
        seed=effective.seed,
        workers=effective.convert_workers,
        prompt=overrides.prompt,
        model=effective.base_model,
        epochs=effective.n_epochs or ConvertOptions.epochs,
        price_per_1m_training_tokens=effective.price_training_per_1m_tokens,
        min_side=effective.min_side,
        memory_budget=image_memory_budget(effective.instance_memory_mb),
        max_aspect_ratio=effective.max_aspect_ratio,
    )


# What an intake report says when the intake failed in a way no check foresaw (a bug, storage down).
UNEXPECTED_STAGE = "intake"


_Params = ParamSpec("_Params")


def _reports_unexpected_failures(
    accept: Callable[Concatenate[Settings, str, _Params], IntakeResult | None],
) -> Callable[Concatenate[Settings, str, _Params], IntakeResult | None]:
    """``accept`` (settings, dataset, ...), and an intake report for any exception it did not foresee.

    The report is written at once, on every failing attempt, and the exception is re-raised so the
    trigger retries: a transient cause (storage, the network) may pass, and a later success clears the
    report; a lasting one (a bug) ends in the poison queue WITH the report, so no marker is left without a
    run or a report. Waiting for the last attempt would need the trigger's dequeue count, which a blob
    trigger does not give the function."""

    @functools.wraps(accept)
    def reporting(
        settings: Settings, dataset: str, /, *args: _Params.args, **kwargs: _Params.kwargs
    ) -> IntakeResult | None:
        try:
            return accept(settings, dataset, *args, **kwargs)
        except Exception as error:
            _report_unexpected_failure(settings, dataset, error)
            raise

    return reporting


def _report_unexpected_failure(settings: Settings, dataset: str, error: Exception) -> None:
    try:
        validate_dataset_name(dataset)
    except ValueError:
        return
    message = (
        f"the intake failed unexpectedly ({type(error).__name__}: {error}); the trigger retries the drop "
        "and a retry that succeeds replaces this report. If it stays, drop the dataset again or report the error."
    )
    note(outcome="failed", failed_stage=UNEXPECTED_STAGE)
    try:
        publish_intake_failure(Pipeline(settings), dataset, UNEXPECTED_STAGE, message)
    except Exception:  # noqa: BLE001 - storage itself may be what failed; the trigger's retry still runs
        log.exception("%s: the intake report of an unexpected failure could not be written", dataset)


@_reports_unexpected_failures
def accept_dataset(
    settings: Settings,
    dataset: str,
    *,
    archive: bool,
    marker_body: bytes,
    archive_blob: BlobClient | None = None,
) -> IntakeResult | None:
    """Convert ``datasets/<dataset>/`` (or ``datasets/<dataset>.zip`` when ``archive``) into
    ``training/<dataset>/<version>/`` and create the run (state ``converted``) just before the version is
    published. Returns None (after writing a failure report) when the drop cannot be used.
    ``archive_blob``: the archive's client as the trigger bound it (else one is made from the settings);
    the archive is read with ranged downloads, never whole. An exception no check foresaw is reported
    (``_reports_unexpected_failures``) and re-raised."""
    started = time.monotonic()
    try:
        validate_dataset_name(dataset)
    except ValueError as error:
        log.error("ignoring a drop: %s", error)
        note(outcome="refused")
        return None
    pipeline = Pipeline(settings)
    try:
        overrides = RunOverrides.parse_marker(marker_body)
    except OverridesError as error:
        log.error("%s: %s", dataset, error)
        publish_intake_failure(pipeline, dataset, "marker", str(error))
        note(outcome="failed", failed_stage="marker")
        return None
    for warning in overrides.warnings:  # an old key name: read all the same, and said on the run's timeline
        log.warning("%s: %s", dataset, warning)
    problem = _base_model_problem(pipeline, overrides.apply(settings).base_model)
    if problem is not None:  # found out before converting, so before anything is uploaded
        log.error("%s: %s", dataset, problem)
        where = "marker" if overrides.base_model else "preflight"  # else VISIONTUNE_BASE_MODEL is wrong
        publish_intake_failure(pipeline, dataset, where, problem)
        note(outcome="failed", failed_stage=where)
        return None

    what = drop_description(dataset, archive)
    options = convert_options(settings, overrides)
    if archive and archive_blob is None:
        archive_blob = pipeline.datasets.get_blob_client(dataset_archive_blob(dataset))
    fingerprint = drop_fingerprint(pipeline, dataset, archive, marker_body, options, archive_blob=archive_blob)
    receipt_name = intake_receipt_blob(dataset, fingerprint)
    receipt = pipeline.store.read(receipt_name, IntakeReceipt)
    if receipt is not None and pipeline.manifest(dataset, receipt.version) is not None:
        # A replay of a drop already converted (same blobs, same ETags, same options): skip the conversion.
        log.info("%s: this drop was already converted to version %s", dataset, receipt.version)
        set_run_state("converted", receipt.version)
        note(outcome="replay")
        if recheck_over_budget(pipeline, dataset, receipt.version, overrides.values()) is not None:
            retry_run(pipeline, dataset, receipt.version, REDROP_REASON)
            supersede_older_runs(pipeline, dataset, receipt.version)
            return IntakeResult(
                dataset=dataset, version=receipt.version, published=False, run_created=False, examples=receipt.examples
            )
    if settings.shard_min_images:
        try:
            messages = plan_fanout(pipeline, settings, dataset, fingerprint, marker_body, options, archive=archive_blob)
        except ValueError as error:  # DatasetError included: the listing alone shows it cannot train
            kind = "the dataset cannot be used: " if isinstance(error, DatasetError) else ""
            log.error("%s: %s%s", dataset, kind, error)
            publish_intake_failure(pipeline, dataset, "convert", str(error) if kind else f"{what}: {error}")
            note(outcome="failed", failed_stage="convert")
            return None
        if messages is not None:
            note(outcome="fanned_out", shards=len(messages))
            return IntakeResult(
                dataset=dataset, version="", published=False, run_created=False, examples=0,
                shard_messages=tuple(messages),
            )  # fmt: skip
    created: dict[str, object] = {}
    counts: dict[str, object] = {}

    def create_run(version: str) -> None:
        manifest = parse_document(Manifest, sink.read_staged(MANIFEST_NAME), f"{dataset}/{version}/{MANIFEST_NAME}")
        intake = {**counts, "seconds": round(time.monotonic() - started, 1)}
        stored, was_created = create_converted_run(pipeline, dataset, version, overrides, manifest, intake, what)
        created.update(run=stored, created=was_created)

    sink = BlobArtifactSink(pipeline.training, dataset, before_publish=create_run)
    try:
        with ExitStack() as stack:
            source: DatasetSource
            if archive_blob is not None:  # set above whenever ``archive``
                source = ZipSource(stack.enter_context(open_blob_reader(archive_blob)))
            else:
                source = BlobDatasetSource(
                    pipeline.datasets, dataset_prefix(dataset), read_concurrency=settings.convert_read_concurrency
                )
            cache = image_cache(pipeline, settings, dataset, options) if settings.convert_cache else None
            started = time.perf_counter()
            result = convert_dataset(source, sink, options, cache=cache, live_stats=counts)
            note(convert_s=round(time.perf_counter() - started, 3))
    except DatasetError as error:
        log.error("%s: the dataset cannot be used: %s", dataset, error)
        publish_intake_failure(pipeline, dataset, "convert", str(error))
        note(outcome="failed", failed_stage="convert")
        return None
    except ValueError as error:  # an unreadable archive, a path outside the layout
        log.error("%s: %s", dataset, error)
        publish_intake_failure(pipeline, dataset, "convert", f"{what}: {error}")
        note(outcome="failed", failed_stage="convert")
        return None

    manifest = manifest_from(result.manifest, f"{dataset}/{result.version}/{MANIFEST_NAME}")
    examples = finish_intake(
        pipeline, dataset, result.version, overrides, manifest, len(result.rejected), created,
        cache=cache, published=sink.published, receipt_name=receipt_name,
    )  # fmt: skip
    return IntakeResult(
        dataset=dataset,
        version=result.version,
        published=sink.published,
        run_created=bool(created.get("created")),
        examples=examples,
    )


def drop_description(dataset: str, archive: bool) -> str:
    """How the run's timeline names the drop."""
    return f"datasets/{dataset}.zip" if archive else f"datasets/{dataset}/"


def create_converted_run(
    pipeline: Pipeline,
    dataset: str,
    version: str,
    overrides: RunOverrides,
    manifest: Manifest,
    intake: dict[str, object],
    what: str,
) -> tuple[Run, bool]:
    """Create the run of a converted version (state ``converted``, intake counts on its timeline), just
    before its manifest is published; ``(run, created)``, created False when it was already there."""
    run = Run(dataset=dataset, version=version, overrides=overrides.values())
    fill_from_manifest(run, manifest)
    examples = sum(int(s.get("examples", 0)) for s in run.splits.values())
    run.intake = intake
    run.transitions.append(
        Transition(
            state="converted",
            at=utcnow(),
            detail=f"{examples} examples, {len(run.labels)} labels from {what}; {describe_intake(run.intake)}",
        )
    )
    for warning in overrides.warnings:
        run.note(warning)
    return pipeline.store.create(run)


def finish_intake(
    pipeline: Pipeline,
    dataset: str,
    version: str,
    overrides: RunOverrides,
    manifest: Manifest,
    rejected: int,
    created: dict[str, object],
    *,
    cache: ImageCache | None,
    published: bool,
    receipt_name: str,
) -> int:
    """After a version is published (or found already there): make sure its run exists, re-check the
    budget of an existing run, clear an old intake failure, collect the cache, write the drop's receipt.
    ``created`` is what ``create_converted_run`` gave (empty when it was not called). Returns the examples."""
    if not created:  # the version was already published: make sure its run exists all the same
        run = Run(dataset=dataset, version=version, overrides=overrides.values())
        fill_from_manifest(run, manifest)
        _, was_created = pipeline.store.create(run)
        created.update(created=was_created)
        log.info("%s: version %s is already there; nothing new to convert", dataset, version)
    if not created.get("created"):
        recheck_over_budget(pipeline, dataset, version, overrides.values())
        retry_run(pipeline, dataset, version, REDROP_REASON)
    supersede_older_runs(pipeline, dataset, version)
    _clear_intake_failure(pipeline, dataset)
    if cache is not None:
        collect_cache(pipeline, dataset, cache)
    examples = sum(split.examples for split in manifest.splits.values())
    run_state = created["run"].state.value if "run" in created else "converted"  # type: ignore[attr-defined]
    set_run_state(run_state, version)
    note(
        outcome="published" if published else "already_there",
        examples=examples,
        rejected=rejected,
        ignored=len(manifest.ignored),
        labels=len(manifest.labels),
    )
    receipt = IntakeReceipt(version=version, examples=examples, at=utcnow())
    pipeline.store.update_document(receipt_name, IntakeReceipt, lambda _: receipt)
    return examples


def _base_model_problem(pipeline: Pipeline, model: str) -> str | None:
    """Why the run's base model cannot be fine-tuned on the resource (the models list), or None."""
    return base_model_problem(pipeline.openai, model)


def describe_intake(intake: dict[str, object]) -> str:
    """``"12 images converted, 480 reused from the cache, 3 files rejected; intake took 4.2 s"``, and
    ``" in 3 shards"`` after it for a fanned-out drop."""
    shards = f" in {intake['shards']} shards" if intake.get("shards") else ""
    return (
        f"{intake.get('images_converted', 0)} images converted, {intake.get('images_reused', 0)} reused from "
        f"the cache, {intake.get('files_rejected', 0)} files rejected; intake took {intake.get('seconds', 0)} s"
        f"{shards}"
    )


def drop_fingerprint(
    pipeline: Pipeline,
    dataset: str,
    archive: bool,
    marker_body: bytes,
    options: object,
    *,
    archive_blob: BlobClient | None = None,
) -> str:
    """A digest of what a conversion would read: every blob of the drop (name, size, ETag), the marker and
    the conversion options. Equal fingerprints convert to the same version, so a replay can skip the work."""
    digest = hashlib.sha256()
    if archive:
        archive_client = archive_blob or pipeline.datasets.get_blob_client(dataset_archive_blob(dataset))
        properties = archive_client.get_blob_properties()
        digest.update(f"zip\t{properties.size}\t{properties.etag}\n".encode())
    else:
        for listed in pipeline.datasets.list_blobs(name_starts_with=dataset_prefix(dataset)):
            digest.update(f"{listed.name}\t{listed.size}\t{listed.etag}\n".encode())
    digest.update(marker_body or b"")
    digest.update(repr(options).encode())
    return digest.hexdigest()[:32]


def _clear_intake_failure(pipeline: Pipeline, dataset: str) -> None:
    for blob in pipeline.reports.list_blobs(name_starts_with=report_prefix(dataset, INTAKE_VERSION)):
        pipeline.reports.delete_blob(blob.name)
