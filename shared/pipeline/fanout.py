"""Fan-out: a large drop (a folder or a ``.zip``) converted by shards on the function app's own scale-out.

``plan_fanout`` (``shared.pipeline.fanout_plan``, called by ``accept_dataset``) lists the drop, writes the plan to
``training/_shards/<dataset>/<job>/plan.json`` (``job`` = the drop's fingerprint, so a replayed drop finds
its own plan) and returns one message per shard; the ``dataset_ready`` (or ``dataset_archive_ready``)
trigger sends them to ``SHARD_QUEUE`` through its queue output binding. ``run_shard`` (the
``convert_shard`` queue trigger):

1. converts its slice (``shared.conversion.shards``, through the same converter and image cache), writes
   one part per split, then its done marker ``done/<shard>.json`` (its result document) with
   If-None-Match: * (a second delivery that finds the marker skips the work: the parts are the same bytes);
2. lists the done markers; the delivery that sees all of them tries to create ``assembler.json`` with
   If-None-Match: *. Exactly one creation succeeds, so one shard assembles (its own redelivery, named in
   the claim, may take over after a failure). Each shard writes its marker before it lists, so the last
   one to finish always sees every marker;
3. the assembler decides pass 2 from the result documents, stages ``train/validation/test.jsonl`` from
   ranges of the parts with Put Block From URL (``BlobArtifactSink.assemble``), writes ``rejected.json``,
   the cache's refs, then the manifest last through the same sink as a one-process conversion (the run is
   created just before, the ``training_ready`` trigger fires on the manifest), writes the drop's receipt,
   marks the job ``assembled.json`` and deletes the parts.

A shard that fails is retried by the host; the call that fails for the ``SHARD_MAX_DEQUEUE_COUNT``-th
time writes the intake failure report (naming the shard and the file) before its message goes to
``<queue>-poison``. Dropping the same data again re-sends the shards of the unfinished job (uploading a
``.zip`` again gives it a new ETag: a new job).

A zip drop's shard reads the archive by ranged requests pinned to the ETag in the plan (If-Match), the
central directory and then only its own entries (``RangedZipSource``). An archive replaced or deleted
meanwhile fails nothing silently: the shard abandons the job (``assembled.json`` says why, later shards
stop at it) and writes the intake failure report, so no version mixes two archives.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING, Any

from shared.conversion.examples import example_line
from shared.conversion.manifest import canonical_json
from shared.conversion.options import ConvertOptions, DatasetError
from shared.conversion.records import Prepared
from shared.conversion.shards import ShardFileError, assemble, convert_shard, part_name
from shared.conversion.sources import DatasetSource, SourceEntry
from shared.errors import SourceChangedError
from shared.layout import (
    MANIFEST_NAME,
    REJECTED_NAME,
    SHARD_MAX_DEQUEUE_COUNT,
    SHARD_POISON_QUEUE,
    SPLITS,
    intake_receipt_blob,
    shard_job_prefix,
)
from shared.pipeline.context import Pipeline
from shared.pipeline.documents import IntakeReceipt, manifest_from
from shared.pipeline.fanout_plan import PLAN, open_archive
from shared.pipeline.intake import (
    convert_options,
    create_converted_run,
    drop_description,
    drop_fingerprint,
    finish_intake,
)
from shared.pipeline.intake_cache import image_cache
from shared.pipeline.overrides import RunOverrides
from shared.pipeline.reports import publish_intake_failure
from shared.settings import Settings
from shared.storage.readers import BlobChangedError, BlobDatasetSource
from shared.storage.writers import BlobArtifactSink, BlockBlobWriter, delete_blobs
from shared.telemetry import note

if TYPE_CHECKING:
    from shared.conversion.ranged_zip import RangedZipSource

log = logging.getLogger(__name__)

DONE = "done/"
CLAIM = "assembler.json"
ASSEMBLED = "assembled.json"
PARTS = "parts/"


def _options(plan: dict[str, Any]) -> ConvertOptions:
    data = dict(plan["options"])
    data["split"] = tuple(data["split"])
    return ConvertOptions(**data)


def run_shard(settings: Settings, body: bytes, dequeue_count: int = 1) -> str:
    """Handle one shard message (see the module docstring). Returns what happened: ``converted``,
    ``already_converted``, ``assembled``, ``job_done``, ``no_plan``. Raises on failure (the host retries);
    the ``SHARD_MAX_DEQUEUE_COUNT``-th failure first writes the intake failure report."""
    message = json.loads(body)
    dataset, job, shard, shards = message["dataset"], message["job"], int(message["shard"]), int(message["shards"])
    pipeline = Pipeline(settings)
    prefix = shard_job_prefix(dataset, job)
    container = pipeline.training
    if container.get_blob_client(prefix + ASSEMBLED).exists():
        note(outcome="job_done")
        return "job_done"
    plan_blob = container.get_blob_client(prefix + PLAN)
    if not plan_blob.exists():
        log.warning("%s: shard %d of job %s has no plan; ignoring the message", dataset, shard, job)
        note(outcome="no_plan")
        return "no_plan"
    plan = json.loads(plan_blob.download_blob().readall())
    where = f"shard {shard + 1} of {shards} (job {job})"
    try:
        outcome = "already_converted"
        if not container.get_blob_client(f"{prefix}{DONE}{shard:05d}.json").exists():
            _convert_shard(pipeline, settings, plan, shard)
            outcome = "converted"
        if _claim_assembly(pipeline, prefix, shard, shards):
            _assemble(pipeline, settings, plan, where)
            outcome = "assembled"
    except ArchiveReplacedError as error:  # lasting: retrying cannot read the planned version again
        text = (
            f"{where} stopped: {error}. The job is abandoned so that no version mixes two archives; "
            "the new archive is converted by its own trigger (this report goes when it is published)."
        )
        log.error("%s: %s", dataset, text)
        if not _replacement_converted(pipeline, settings, dataset, plan):  # else this report would outlive the newer drop
            publish_intake_failure(pipeline, dataset, "convert", text)
        note(outcome="failed", failed_stage="convert", shard=shard, shards=shards)
        _mark_assembled(pipeline, prefix, {"failed": text})
        return "archive_replaced"
    except Exception as error:
        if dequeue_count >= SHARD_MAX_DEQUEUE_COUNT:
            file = f" on file {error.path}" if isinstance(error, ShardFileError) else ""
            text = (
                f"{where} failed {dequeue_count} times{file}: {type(error).__name__}: {error}; its message is "
                f"in the {SHARD_POISON_QUEUE} queue. Drop the data again to retry the unfinished shards."
            )
            log.error("%s: %s", dataset, text)
            publish_intake_failure(pipeline, dataset, "convert", text)
        raise
    note(outcome=outcome, shard=shard, shards=shards)
    return outcome


def _convert_shard(pipeline: Pipeline, settings: Settings, plan: dict[str, Any], shard: int) -> None:
    dataset = plan["dataset"]
    with ExitStack() as stack:
        source: DatasetSource
        archive: _PinnedArchive | None = None
        if "archive" in plan:
            source = archive = stack.enter_context(_PinnedArchive.open(pipeline, plan))
        else:
            source = BlobDatasetSource(
                pipeline.datasets, f"{dataset}/", read_concurrency=settings.convert_read_concurrency
            )
        _convert_shard_from(pipeline, settings, plan, shard, source, archive)


def _convert_shard_from(
    pipeline: Pipeline,
    settings: Settings,
    plan: dict[str, Any],
    shard: int,
    source: DatasetSource,
    archive: _PinnedArchive | None,
) -> None:
    from azure.core.exceptions import ResourceExistsError

    dataset, prefix = plan["dataset"], shard_job_prefix(plan["dataset"], plan["job"])
    options = _options(plan)
    cache = image_cache(pipeline, settings, dataset, options.validated()) if settings.convert_cache else None
    if cache is not None:
        cache.load()

    @contextmanager
    def open_part(name: str) -> Iterator[BlockBlobWriter]:
        writer = BlockBlobWriter(pipeline.training.get_blob_client(f"{prefix}{PARTS}{name}"))
        try:
            yield writer
        except BaseException:
            writer.abort()
            raise
        writer.close()

    try:
        result = convert_shard(
            source, Prepared.from_json(plan["prepared"]), plan["assignment"][shard], options, open_part,
            shard=shard, cache=cache, line=_line,
        )  # fmt: skip
        if archive is not None:
            archive.check()  # before the cache keeps anything or the marker says done
        if cache is not None:
            cache.seal()
    except BaseException:
        if cache is not None:
            cache.abort()
        raise
    try:  # the marker last: a shard with a marker has all its parts
        pipeline.training.upload_blob(f"{prefix}{DONE}{shard:05d}.json", json.dumps(result).encode(), overwrite=False)
    except ResourceExistsError:
        log.info("%s: shard %d was converted by another delivery meanwhile", dataset, shard)


class ArchiveReplacedError(SourceChangedError):
    """The zip drop a fan-out planned was replaced (or deleted) before a shard read all its entries."""

    transient = False  # lasting: a retry cannot read the planned version again


class _PinnedArchive:
    """A zip drop's entries as the plan listed them: ranged reads pinned to the plan's ETag, one request
    per entry (``RangedZipSource``). A read that fails because the archive changed raises
    ``ArchiveReplacedError`` (a ``SourceChangedError``, which stops pass 1 instead of becoming a rejected
    file); it is also remembered, and ``check`` raises it again for a caller that caught it."""

    read_concurrency = 1

    def __init__(self, source: RangedZipSource, what: str) -> None:
        self._source = source
        self._what = what
        self._changed: BaseException | None = None

    @classmethod
    @contextmanager
    def open(cls, pipeline: Pipeline, plan: dict[str, Any]) -> Iterator[_PinnedArchive]:
        from azure.core.exceptions import ResourceNotFoundError

        archive = plan["archive"]
        what = f"datasets/{archive['blob']}"
        with ExitStack() as stack:
            try:  # the opening only: a missing blob in the shard's own work is not the archive's doing
                source, _ = stack.enter_context(
                    open_archive(pipeline.datasets.get_blob_client(archive["blob"]), archive["etag"])
                )
            except (BlobChangedError, ResourceNotFoundError) as error:
                raise ArchiveReplacedError(_replaced(what, archive["etag"], error)) from error
            yield cls(source, what)

    def entries(self) -> Iterator[SourceEntry]:
        return self._source.entries()

    def read(self, path: str) -> bytes:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            return self._source.read(path)
        except (BlobChangedError, ResourceNotFoundError) as error:
            self._changed = self._changed or error
            # a SourceChangedError: pass 1 stops on it instead of rejecting the file
            raise ArchiveReplacedError(_replaced(self._what, "", error)) from error

    def check(self) -> None:
        """``ArchiveReplacedError`` if a read found the archive replaced or deleted."""
        if self._changed is not None:
            raise ArchiveReplacedError(f"{_replaced(self._what, '', self._changed)}") from self._changed


def _replaced(what: str, etag: str, error: BaseException) -> str:
    from azure.core.exceptions import ResourceNotFoundError

    change = "deleted" if isinstance(error, ResourceNotFoundError) else "replaced"
    version = f" (ETag {etag})" if etag else ""
    return f"{what} was {change} while the fan-out read the version it planned{version}"


def _replacement_converted(pipeline: Pipeline, settings: Settings, dataset: str, plan: dict[str, Any]) -> bool:
    """True when the archive that replaced the planned one is already converted (its receipt is there)."""
    from azure.core.exceptions import ResourceNotFoundError

    marker = base64.b64decode(plan["marker"])
    options = convert_options(settings, RunOverrides.parse_marker(marker))  # as the intake computed it
    try:
        job = drop_fingerprint(pipeline, dataset, True, marker, options)
    except ResourceNotFoundError:
        return False
    if job == plan["job"]:
        return False
    return pipeline.store.read(intake_receipt_blob(dataset, job), IntakeReceipt) is not None


def _line(prompt: str, record: Any, jpeg: bytes) -> bytes:
    """One example line (a seam the fault tests patch to fail on a chosen file)."""
    return example_line(prompt, record.label, jpeg)


def _claim_assembly(pipeline: Pipeline, prefix: str, shard: int, shards: int) -> bool:
    """True when every shard is done and this shard is (or, on redelivery, was) the one to assemble."""
    from azure.core.exceptions import ResourceExistsError

    done = sum(1 for _ in pipeline.training.list_blobs(name_starts_with=prefix + DONE))
    if done < shards:
        return False
    claim = pipeline.training.get_blob_client(prefix + CLAIM)
    try:
        claim.upload_blob(json.dumps({"shard": shard, "at": time.time()}).encode(), overwrite=False)
        return True
    except ResourceExistsError:
        owner = json.loads(claim.download_blob().readall()).get("shard")
        return bool(owner == shard)  # this shard's earlier delivery claimed it and failed: take it up again


def _assemble(pipeline: Pipeline, settings: Settings, plan: dict[str, Any], where: str) -> None:
    dataset, job = plan["dataset"], plan["job"]
    prefix = shard_job_prefix(dataset, job)
    container = pipeline.training
    options = _options(plan)
    overrides = RunOverrides.parse_marker(base64.b64decode(plan["marker"]))
    markers = sorted(blob.name for blob in container.list_blobs(name_starts_with=prefix + DONE))
    with ThreadPoolExecutor(max_workers=min(16, max(1, len(markers))), thread_name_prefix="visiontune-results") as pool:
        results = list(pool.map(lambda name: json.loads(container.download_blob(name).readall()), markers))  # in order
    cache = image_cache(pipeline, settings, dataset, options.validated()) if settings.convert_cache else None
    try:
        assembly = assemble(Prepared.from_json(plan["prepared"]), options, results, cache)
    except DatasetError as error:
        log.error("%s: the dataset cannot be used: %s", dataset, error)
        publish_intake_failure(pipeline, dataset, "convert", str(error))
        note(outcome="failed", failed_stage="convert")
        _mark_assembled(pipeline, prefix, {"failed": str(error)})
        return
    manifest = manifest_from(assembly.manifest, f"{dataset}/{assembly.version}/{MANIFEST_NAME}")
    created: dict[str, object] = {}
    what = drop_description(dataset, "archive" in plan)
    intake = {
        "images_converted": assembly.images_converted,
        "images_reused": assembly.images_reused,
        "files_rejected": len(assembly.rejected),
        "shards": plan["shards"],
        "seconds": round(time.time() - float(plan["started_at"]), 1),
    }

    def create_run(version: str) -> None:
        stored, was_created = create_converted_run(pipeline, dataset, version, overrides, manifest, intake, what)
        created.update(run=stored, created=was_created)

    sink = BlobArtifactSink(container, dataset, before_publish=create_run)

    def assemble_split(split: str) -> None:  # server-side: Put Block From URL over ranges of the shards' parts
        sink.assemble(
            f"{split}.jsonl",
            [(f"{prefix}{PARTS}{part_name(shard, split)}", offset, length)
             for shard, offset, length in assembly.ranges[split]],
        )  # fmt: skip

    def write(name: str, document: Any) -> None:
        with sink.open(name) as out:
            out.write(canonical_json(document))

    try:
        # Every call waits on requests, not on CPU: the splits and rejected.json at once, then the cache's refs
        # and the manifest at once; the commit publishes the manifest last.
        with ThreadPoolExecutor(max_workers=len(SPLITS) + 1, thread_name_prefix="visiontune-splits") as pool:
            futures = [pool.submit(assemble_split, split) for split in SPLITS]
            futures.append(pool.submit(write, REJECTED_NAME, assembly.rejected))
            for future in futures:
                future.result()
            futures = [pool.submit(write, MANIFEST_NAME, assembly.manifest)]
            if cache is not None:
                futures.append(pool.submit(cache.finish, assembly.version, assembly.cache_keys, assembly.sources))
            for future in futures:
                future.result()
        sink.commit(assembly.version)
    except BaseException:
        sink.discard()
        raise
    finish_intake(
        pipeline, dataset, assembly.version, overrides, manifest, len(assembly.rejected), created,
        cache=cache, published=sink.published, receipt_name=intake_receipt_blob(dataset, job),
    )  # fmt: skip
    log.info("%s: %s assembled version %s from %d shards", dataset, where, assembly.version, plan["shards"])
    _mark_assembled(pipeline, prefix, {"version": assembly.version})


def _mark_assembled(pipeline: Pipeline, prefix: str, outcome: dict[str, Any]) -> None:
    """Record the job's end (later deliveries stop at it) and delete its parts and markers."""
    container = pipeline.training
    container.upload_blob(prefix + ASSEMBLED, json.dumps({**outcome, "at": time.time()}).encode(), overwrite=True)
    names = [b.name for b in container.list_blobs(name_starts_with=prefix)]
    delete_blobs(container, [n for n in names if n.startswith((prefix + PARTS, prefix + DONE))])
