"""shared/aoai against the real local Azure OpenAI emulator (official SDKs, real HTTP on loopback):
idempotent uploads, job find-or-create and snapshots, deployments and their error classes, real-time
scoring under 429s / 500s / deadlines, and batches in every terminal status."""

from __future__ import annotations

import io
import json
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest

from local.emulator import EmulatorServer, local_settings_values
from local.emulator.admin import EmulatorAdmin
from local.emulator.constants import BASE_DEPLOYMENT, BASE_MODEL, BATCH_DEPLOYMENT
from shared.aoai import files as aoai_files
from shared.aoai.batch_scoring import batch_input_lines, batch_snapshot, cancel_batch, submit_batch
from shared.aoai.clients import management_client, openai_client
from shared.aoai.deployments import (
    DeploymentConflictError,
    DeploymentError,
    Deployments,
    TransientDeploymentError,
    deployment_name,
)
from shared.aoai.files import FileUploadError, delete_file, file_state, upload_file
from shared.aoai.finetune import cancel_job, create_job, find_job_for_training_file, job_snapshot, make_suffix
from shared.aoai.realtime_scoring import score_realtime
from shared.aoai.scoring import ScoringError, TestItem, read_test_items
from shared.settings import Settings
from tests.fixtures.emulator import digit_split, digits_examples, fast_config, to_jsonl, wait_until

pytestmark = pytest.mark.emulator


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorServer]:
    """One emulator for this module (own data dir: the file quota and job list are ours alone)."""
    emulator = EmulatorServer(tmp_path_factory.mktemp("aoai-emulator"), config=fast_config()).start()
    yield emulator
    emulator.stop()


@pytest.fixture(scope="module")
def settings(server: EmulatorServer) -> Settings:
    return Settings(**local_settings_values(server.url))


@pytest.fixture(scope="module")
def client(settings: Settings) -> Any:
    return openai_client(settings)


@pytest.fixture
def admin(server: EmulatorServer) -> Iterator[EmulatorAdmin]:
    with EmulatorAdmin(server.url) as emulator_admin:
        emulator_admin.reset_faults()
        yield emulator_admin
        emulator_admin.reset_faults()


TRAIN_INDICES, HELD_OUT = digit_split()


def _upload(client: Any, name: str, data: bytes, purpose: str = "fine-tune") -> str:
    file_id = upload_file(client, name=name, size=len(data), open_stream=lambda: io.BytesIO(data), purpose=purpose)
    state = wait_until(lambda: (s := file_state(client, file_id)).status != "pending" and s, timeout=20)
    assert state.processed, state
    return file_id


def _files_named(client: Any, name: str) -> list[Any]:
    return [f for f in client.files.list() if f.filename == name]


def _test_items(indices: list[int]) -> list[TestItem]:
    return read_test_items(json.dumps(row) for row in digits_examples(indices))


@pytest.fixture(scope="module")
def trained_job(client: Any) -> str:
    """A succeeded fine-tuning job on 80 digits (find-or-create replayed 10 times)."""
    train = _upload(client, "vt-digits-v1-train.jsonl", to_jsonl(digits_examples(TRAIN_INDICES[:80])))
    valid = _upload(client, "vt-digits-v1-validation.jsonl", to_jsonl(digits_examples(TRAIN_INDICES[80:100])))
    arguments = dict(
        model=BASE_MODEL, training_file=train, validation_file=valid, suffix=make_suffix("digits"), seed=7,
        n_epochs=2, batch_size=None, learning_rate_multiplier=None, training_type="globalstandard",
    )
    job_ids = {create_job(client, **arguments) for _ in range(10)}
    assert len(job_ids) == 1
    job_id = job_ids.pop()
    wait_until(lambda: job_snapshot(client, job_id).terminal, timeout=60, interval=0.2)
    return job_id


# -- files ------------------------------------------------------------------------------------------


def test_upload_is_idempotent_and_reaches_processed(client: Any) -> None:
    data = to_jsonl(digits_examples(TRAIN_INDICES[200:215]))
    opened: list[int] = []

    def open_stream() -> io.BytesIO:
        opened.append(1)
        return io.BytesIO(data)

    ids = {
        upload_file(client, name="vt-idem-v1-train.jsonl", size=len(data), open_stream=open_stream, purpose="fine-tune")
        for _ in range(3)
    }
    assert len(ids) == 1 and len(opened) == 1
    assert len(_files_named(client, "vt-idem-v1-train.jsonl")) == 1
    file_id = ids.pop()
    state = wait_until(lambda: (s := file_state(client, file_id)).status != "pending" and s, timeout=20)
    assert state.processed and state.bytes == len(data) and state.filename == "vt-idem-v1-train.jsonl"
    # Same name, other bytes: a different file (e.g. a re-run wrote a longer split).
    longer = data + to_jsonl(digits_examples(TRAIN_INDICES[215:216]))
    other = upload_file(
        client, name="vt-idem-v1-train.jsonl", size=len(longer), open_stream=lambda: io.BytesIO(longer), purpose="fine-tune"
    )
    assert other != file_id
    for fid in (file_id, other):
        delete_file(client, fid)
        delete_file(client, fid)  # absent is fine
    assert file_state(client, file_id).status == "error"
    assert "does not exist" in (file_state(client, file_id).error or "")


def test_invalid_training_file_ends_in_error_with_the_service_message(client: Any) -> None:
    data = b'{"messages": "not a list"}\n' * 12
    file_id = upload_file(
        client, name="vt-bad-v1-train.jsonl", size=len(data), open_stream=lambda: io.BytesIO(data), purpose="fine-tune"
    )
    state = wait_until(lambda: (s := file_state(client, file_id)).status != "pending" and s, timeout=20)
    assert state.status == "error" and state.error
    # An errored file is not reused: uploading again makes a new one.
    again = upload_file(
        client, name="vt-bad-v1-train.jsonl", size=len(data), open_stream=lambda: io.BytesIO(data), purpose="fine-tune"
    )
    assert again != file_id
    for fid in (file_id, again):
        delete_file(client, fid)


class _OneWayStream(io.RawIOBase):
    """A stream that cannot seek (like a network download)."""

    def __init__(self, data: bytes) -> None:
        self._inner = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        chunk = self._inner.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)


def test_non_seekable_stream_survives_a_retried_upload(client: Any, admin: EmulatorAdmin) -> None:
    data = to_jsonl(digits_examples(TRAIN_INDICES[300:312]))
    admin.inject(route="files_create", status=500, retry_after=0.05, count=1)
    file_id = upload_file(
        client, name="vt-stream-v1-train.jsonl", size=len(data), open_stream=lambda: _OneWayStream(data), purpose="fine-tune"
    )
    assert admin.stats().faults.get("files_create") == 1
    assert client.files.content(file_id).content == data
    delete_file(client, file_id)


def test_uploads_api_path_for_large_files(client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    data = to_jsonl(digits_examples(TRAIN_INDICES[400:412]))
    monkeypatch.setattr(aoai_files, "FILES_API_MAX_BYTES", 1024)
    monkeypatch.setattr(aoai_files, "UPLOAD_PART_MAX_BYTES", len(data) // 3 + 1)
    try:
        file_id = upload_file(
            client, name="vt-big-v1-train.jsonl", size=len(data), open_stream=lambda: io.BytesIO(data), purpose="fine-tune"
        )
    except FileUploadError as exc:
        if "HTTP 404" in str(exc):
            pytest.skip(f"the emulator has no Uploads API (/openai/uploads) yet: {exc}")
        raise
    assert client.files.content(file_id).content == data
    again = upload_file(
        client, name="vt-big-v1-train.jsonl", size=len(data), open_stream=lambda: io.BytesIO(data), purpose="fine-tune"
    )
    assert again == file_id
    delete_file(client, file_id)


# -- fine-tuning ------------------------------------------------------------------------------------


def test_job_find_or_create_replayed_gives_one_job_and_a_full_snapshot(client: Any, trained_job: str) -> None:
    snapshot = job_snapshot(client, trained_job)
    assert snapshot.status == "succeeded" and snapshot.terminal and snapshot.succeeded
    assert snapshot.error is None
    assert snapshot.fine_tuned_model and re.fullmatch(
        re.escape(BASE_MODEL) + r"\.ft-[0-9a-f]{32}-digits", snapshot.fine_tuned_model
    )
    assert snapshot.trained_tokens and snapshot.trained_tokens > 0
    assert snapshot.hyperparameters.get("n_epochs") == 2
    assert snapshot.checkpoints and all(c.startswith("ftchkpt-") for c in snapshot.checkpoints)
    assert all(c.model for c in snapshot.checkpoint_details)
    assert snapshot.results and snapshot.results_error is None
    steps = [row.step for row in snapshot.results]
    assert steps == sorted(steps) and any(row.train_loss is not None for row in snapshot.results)
    stamps = [e.split(" ", 1)[0] for e in snapshot.events]
    assert len(snapshot.events) >= 3 and stamps == sorted(stamps)
    assert snapshot.created_at and snapshot.finished_at and snapshot.finished_at >= snapshot.created_at
    jobs = [j for j in client.fine_tuning.jobs.list() if j.training_file == snapshot.training_file]
    assert len(jobs) == 1
    assert find_job_for_training_file(client, snapshot.training_file) == trained_job
    cancel_job(client, trained_job)  # finished: nothing to do, no error
    assert job_snapshot(client, trained_job).status == "succeeded"


def test_failed_job_snapshot_carries_the_service_message(client: Any, admin: EmulatorAdmin) -> None:
    train = _upload(client, "vt-fail-v1-train.jsonl", to_jsonl(digits_examples(TRAIN_INDICES[500:512])))
    admin.fail_next_job("The training data was rejected by the content policy.")
    job_id = create_job(
        client, model=BASE_MODEL, training_file=train, validation_file=None, suffix="fail", seed=1,
        n_epochs=None, batch_size=None, learning_rate_multiplier=None, training_type="standard",
    )
    snapshot = wait_until(lambda: (s := job_snapshot(client, job_id)).terminal and s, timeout=60, interval=0.2)
    assert snapshot.status == "failed" and not snapshot.succeeded
    assert "rejected by the content policy" in (snapshot.error or "")
    # Replaying the create after the failure returns the failed job: never a silent second job.
    again = create_job(
        client, model=BASE_MODEL, training_file=train, validation_file=None, suffix="fail", seed=1,
        n_epochs=None, batch_size=None, learning_rate_multiplier=None, training_type="standard",
    )
    assert again == job_id


def test_cancel_a_running_job(client: Any) -> None:
    train = _upload(client, "vt-cancel-v1-train.jsonl", to_jsonl(digits_examples(TRAIN_INDICES[600:612])))
    job_id = create_job(
        client, model=BASE_MODEL, training_file=train, validation_file=None, suffix="cancel", seed=1,
        n_epochs=None, batch_size=None, learning_rate_multiplier=None, training_type="standard",
    )
    cancel_job(client, job_id)
    snapshot = wait_until(lambda: (s := job_snapshot(client, job_id)).terminal and s, timeout=30, interval=0.1)
    assert snapshot.status == "cancelled" and not snapshot.succeeded
    cancel_job(client, "ftjob-does-not-exist")  # absent is fine


def test_create_job_rejects_a_bad_suffix(client: Any) -> None:
    with pytest.raises(ValueError, match="invalid suffix"):
        create_job(
            client, model=BASE_MODEL, training_file="file-x", validation_file=None, suffix="way too long a suffix!",
            seed=1, n_epochs=None, batch_size=None, learning_rate_multiplier=None, training_type="standard",
        )


# -- deployments ------------------------------------------------------------------------------------


def test_deployment_create_get_delete_and_model_is_fixed(
    client: Any, settings: Settings, trained_job: str, admin: EmulatorAdmin
) -> None:
    model = job_snapshot(client, trained_job).fine_tuned_model
    deployments = Deployments(settings)
    name = deployment_name("digits", "v1abcdef", "cand")
    assert deployments.get(name) is None
    admin.reset_stats()
    first = deployments.begin_create(name, model=model, sku="GlobalStandard", capacity=1)
    assert first.model == model and first.provisioning_state in ("Creating", "Accepted", "Succeeded")
    replays = [deployments.begin_create(name, model=model, sku="GlobalStandard", capacity=1) for _ in range(5)]
    assert all(r.name == name and r.model == model for r in replays)
    assert admin.stats().count("deployments_create_or_update") == 1
    ready = wait_until(lambda: (s := deployments.get(name)) and s.settled and s, timeout=20)
    assert ready.succeeded and ready.sku == "GlobalStandard" and ready.capacity == 1
    assert name in {d.name for d in deployments.list()}
    with pytest.raises(DeploymentError, match="cannot be changed") as refused:
        deployments.begin_create(name, model=BASE_MODEL, sku="GlobalStandard", capacity=1)
    assert not isinstance(refused.value, TransientDeploymentError)
    # The fine-tuned deployment answers through the data plane.
    answer = client.chat.completions.create(model=name, messages=_test_items(HELD_OUT[:1])[0].messages, temperature=0)
    assert answer.choices[0].message.content
    deployments.delete(name)
    wait_until(lambda: deployments.get(name) is None, timeout=20)
    deployments.delete(name)  # absent is fine


def test_transient_deployment_failures_are_classified_and_retry_works(
    client: Any, settings: Settings, trained_job: str, admin: EmulatorAdmin
) -> None:
    model = job_snapshot(client, trained_job).fine_tuned_model
    deployments = Deployments(settings, client=management_client(settings))
    name = deployment_name("digits", "v1abcdef", "transient")
    admin.fail_next_deployments(2)
    for _ in range(2):
        with pytest.raises(TransientDeploymentError) as failure:
            deployments.begin_create(name, model=model, sku="GlobalStandard", capacity=1)
        assert failure.value.code == "BadRequestForDependentService"
        assert "dependent service" in str(failure.value).lower()
    assert deployments.get(name) is None
    deployments.begin_create(name, model=model, sku="GlobalStandard", capacity=1)
    assert wait_until(lambda: (s := deployments.get(name)) and s.settled and s, timeout=20).succeeded
    deployments.delete(name)
    # ARM runs one deployment operation per account at a time: the next PUT meanwhile is a 409.
    with pytest.raises(DeploymentConflictError) as conflict:
        deployments.begin_create(name + "-p", model=model, sku="GlobalStandard", capacity=1)
    assert conflict.value.code == "RequestConflict" and conflict.value.status == 409
    assert isinstance(conflict.value, TransientDeploymentError)
    assert deployments.operation_in_progress().name == name
    wait_until(lambda: deployments.operation_in_progress() is None, timeout=20)

    # Provisioning that ends Failed: a second begin_create PUTs again and succeeds.
    admin.fail_next_deployments(1, phase="provisioning")
    requested = deployments.begin_create(name + "-p", model=model, sku="GlobalStandard", capacity=1)
    assert requested.operation_url and "/operationResults/" in requested.operation_url
    failed = wait_until(lambda: (s := deployments.get(name + "-p")) and s.settled and s, timeout=20)
    assert failed.failed
    # ARM puts the reason in the Azure-AsyncOperation status document, not in the deployment resource
    explained = deployments.get(name + "-p", operation_url=requested.operation_url)
    assert explained.failed and explained.error.startswith("BadRequestForDependentService: ")
    assert "dependent service is not ready" in explained.error
    deployments.begin_create(name + "-p", model=model, sku="GlobalStandard", capacity=1)
    assert wait_until(lambda: (s := deployments.get(name + "-p")) and s.settled and s, timeout=20).succeeded
    deployments.delete(name + "-p")


def test_deployment_errors_keep_the_service_message(settings: Settings, admin: EmulatorAdmin) -> None:
    deployments = Deployments(settings)
    with pytest.raises(DeploymentError, match="DeploymentModelNotSupported") as refused:
        deployments.begin_create("vt-nope", model="no-such-model", sku="GlobalStandard", capacity=1)
    assert not isinstance(refused.value, TransientDeploymentError)
    admin.inject(route="deployments_get", status=503, count=-1)
    with pytest.raises(TransientDeploymentError, match="503"):
        deployments.get("vt-anything")


# -- real-time scoring ------------------------------------------------------------------------------


def test_scoring_survives_429s_honouring_retry_after(client: Any, admin: EmulatorAdmin) -> None:
    items = _test_items(HELD_OUT[:8])
    admin.reset_stats()
    admin.inject(route="chat_completions", status=429, retry_after=1, count=3)
    started = time.monotonic()
    scored = score_realtime(client, BASE_DEPLOYMENT, items, concurrency=4)
    elapsed = time.monotonic() - started
    assert [s.custom_id for s in scored] == [i.custom_id for i in items]
    assert all(s.answer is not None and s.error is None for s in scored)
    assert [s.truth for s in scored] == [i.truth for i in items]
    assert admin.stats().faults.get("chat_completions") == 3
    assert elapsed >= 1.0  # the throttled requests waited for Retry-After
    # Latency is the answered attempt's round trip, not the Retry-After wait.
    assert all(s.latency_ms is not None and 0 < s.latency_ms < 900 for s in scored)
    assert all(s.prompt_tokens >= 85 and s.completion_tokens >= 1 for s in scored)


def test_scoring_a_500_storm_records_errors_without_aborting(client: Any, admin: EmulatorAdmin) -> None:
    items = _test_items(HELD_OUT[8:12])
    admin.inject(route="chat_completions", status=500, retry_after=0.02, count=-1)
    scored = score_realtime(client, BASE_DEPLOYMENT, items, concurrency=2)
    assert len(scored) == len(items)
    assert all(s.answer is None and s.latency_ms is None for s in scored)
    assert all("HTTP 500" in (s.error or "") and "server had an error" in (s.error or "") for s in scored)


def test_scoring_stops_at_the_deadline_and_resumes(client: Any, admin: EmulatorAdmin) -> None:
    items = _test_items(HELD_OUT[12:24])
    admin.inject(route="chat_completions", delay_seconds=0.25, count=-1)
    first = score_realtime(client, BASE_DEPLOYMENT, items, concurrency=2, deadline=time.monotonic() + 0.6)
    assert 0 < len(first) < len(items)
    assert [s.custom_id for s in first] == [i.custom_id for i in items[: len(first)]]
    admin.reset_faults()
    rest = score_realtime(client, BASE_DEPLOYMENT, items[len(first) :], concurrency=3)
    assert [s.custom_id for s in first + rest] == [i.custom_id for i in items]
    assert all(s.answer is not None for s in first + rest)


def test_scoring_a_missing_deployment_raises_instead_of_scoring_errors(client: Any) -> None:
    with pytest.raises(ScoringError, match="HTTP 404") as failure:
        score_realtime(client, "vt-no-such-deployment", _test_items(HELD_OUT[:3]), concurrency=2)
    assert failure.value.status == 404


# -- batch ------------------------------------------------------------------------------------------


def _batch_input(client: Any, name: str, items: list[TestItem], deployment: str = BATCH_DEPLOYMENT) -> str:
    return _upload(client, name, batch_input_lines(items, deployment), purpose="batch")


def _terminal_snapshot(client: Any, batch_id: str, items: list[TestItem]) -> Any:
    return wait_until(lambda: (s := batch_snapshot(client, batch_id, items)).terminal and s, timeout=30, interval=0.1)


def test_batch_submit_is_idempotent_and_joins_out_of_order_output(client: Any, admin: EmulatorAdmin) -> None:
    items = _test_items(HELD_OUT[30:42])
    input_id = _batch_input(client, "vt-digits-v1-test-batch.jsonl", items)
    admin.reset_stats()
    batch_ids = {submit_batch(client, input_file_id=input_id) for _ in range(10)}
    assert len(batch_ids) == 1 and admin.stats().count("batches_create") == 1
    batch_id = batch_ids.pop()
    pending = batch_snapshot(client, batch_id, items)
    assert pending.results is None or pending.terminal
    snapshot = _terminal_snapshot(client, batch_id, items)
    assert snapshot.status == "completed" and snapshot.completed and snapshot.answered == len(items)
    assert [r.custom_id for r in snapshot.results] == [i.custom_id for i in items]
    assert [r.truth for r in snapshot.results] == [i.truth for i in items]
    assert all(r.latency_ms is None and r.error is None for r in snapshot.results)
    # The join is by custom_id, whatever order the output file has.
    output = [json.loads(line) for line in client.files.content(snapshot.output_file_id).content.splitlines()]
    by_id = {o["custom_id"]: o["response"]["body"]["choices"][0]["message"]["content"] for o in output}
    assert {r.custom_id: r.answer for r in snapshot.results} == by_id
    assert submit_batch(client, input_file_id=input_id) == batch_id


def test_expired_batch_gives_errors_for_every_item_and_can_be_retried(client: Any, admin: EmulatorAdmin) -> None:
    items = _test_items(HELD_OUT[42:48])
    input_id = _batch_input(client, "vt-digits-v2-test-batch.jsonl", items)
    admin.expire_next_batch()
    batch_id = submit_batch(client, input_file_id=input_id)
    snapshot = _terminal_snapshot(client, batch_id, items)
    assert snapshot.status == "expired" and not snapshot.completed and snapshot.answered == 0
    assert len(snapshot.results) == len(items)
    assert all(r.answer is None and r.error for r in snapshot.results)
    assert submit_batch(client, input_file_id=input_id) == batch_id  # replay: the same (expired) batch
    retried = submit_batch(client, input_file_id=input_id, retry_unsuccessful=True)
    assert retried != batch_id
    assert _terminal_snapshot(client, retried, items).completed


def test_cancelled_batch(client: Any) -> None:
    items = _test_items(HELD_OUT[48:52])
    batch_id = submit_batch(client, input_file_id=_batch_input(client, "vt-digits-v3-test-batch.jsonl", items))
    cancel_batch(client, batch_id)
    snapshot = _terminal_snapshot(client, batch_id, items)
    assert snapshot.status == "cancelled" and snapshot.terminal and not snapshot.completed
    assert all(r.answer is None and "cancelled" in (r.error or "") for r in snapshot.results)


def test_failed_batch_on_a_non_batch_deployment(client: Any) -> None:
    items = _test_items(HELD_OUT[52:55])
    input_id = _batch_input(client, "vt-digits-v4-test-batch.jsonl", items, deployment=BASE_DEPLOYMENT)
    snapshot = _terminal_snapshot(client, submit_batch(client, input_file_id=input_id), items)
    assert snapshot.status == "failed" and snapshot.error and "GlobalBatch" in snapshot.error
    assert all(r.answer is None and "GlobalBatch" in (r.error or "") for r in snapshot.results)


def test_developer_tier_is_requested_with_the_arm_api_version_that_documents_it(
    client: Any, settings: Settings, trained_job: str
) -> None:
    """DeveloperTier PUTs carry api-version 2025-07-01-preview (the emulator refuses it on older ones, as
    Azure does not know the SKU there); every other request keeps the client's api-version."""
    from shared.aoai.clients import MANAGEMENT_API_VERSION
    from shared.aoai.deployments import DEVELOPER_TIER_ARM_API_VERSION

    model = job_snapshot(client, trained_job).fine_tuned_model
    deployments = Deployments(settings, client=management_client(settings))
    wait_until(lambda: deployments.operation_in_progress() is None, timeout=20)
    developer = deployments.begin_create("vt-devtier-check", model=model, sku="DeveloperTier", capacity=1)
    assert f"api-version={DEVELOPER_TIER_ARM_API_VERSION}" in str(developer.operation_url)
    assert wait_until(lambda: (s := deployments.get("vt-devtier-check")) and s.settled and s, timeout=20).succeeded
    deployments.delete("vt-devtier-check")
    wait_until(lambda: deployments.operation_in_progress() is None, timeout=20)
    standard = deployments.begin_create("vt-standard-check", model=model, sku="GlobalStandard", capacity=1)
    assert f"api-version={MANAGEMENT_API_VERSION}" in str(standard.operation_url)
    wait_until(lambda: (s := deployments.get("vt-standard-check")) and s.settled, timeout=20)
    deployments.delete("vt-standard-check")
    wait_until(lambda: deployments.operation_in_progress() is None, timeout=20)
