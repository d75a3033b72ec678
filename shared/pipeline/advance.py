"""Move runs forward in bounded steps: upload -> fine-tune -> deploy -> evaluate -> decide -> promote or
reject -> clean up and report.

Every step follows the same rules (the architecture note's):
- the run is leased (``RunStore.claim``) so two workers never advance it at once;
- intent is saved before a remote side effect and the result right after; every remote create is a
  find-or-create (a file by name and size, a job by its training file, a deployment by its name, a batch
  by its input file), so a crash between the two saves is resumed without a duplicate;
- a transient error schedules a retry with backoff (Retry-After honoured), a permanent one or the last
  attempt fails the run with the stage and the service's message; a terminal run then deletes what it
  created that costs money (deployments, running jobs, files) and writes its report.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Any

from shared.layout import training_prefix
from shared.pipeline.context import Pipeline
from shared.pipeline.failures import STAGE_MIN_ATTEMPTS, record_step_error, retry_due
from shared.pipeline.models import (
    DeploymentInfo,
    RetryState,
    Run,
    RunState,
    UploadedFile,
    utcnow,
)
from shared.pipeline.store import ConcurrentUpdateError
from shared.settings import Settings

log = logging.getLogger(__name__)

STEPS_PER_TICK = 60
# One timer tick works at most this many evaluation budgets (``eval_tick_seconds``) over all runs.
TICK_BUDGET_FACTOR = 2
FILE_POLL_SECONDS = 1.0
# How long one call may hold a run beyond its evaluation budget (one slow request with retries).
LEASE_MARGIN_SECONDS = 600.0
TRAINING_SPLITS = ("train", "validation")

STAGES = {
    RunState.CONVERTED: "budget",
    RunState.UPLOADING: "upload",
    RunState.TRAINING: "training",
    RunState.TRAINED: "deploy",
    RunState.DEPLOYING: "deploy",
    RunState.DEPLOYED: "evaluate",
    RunState.EVALUATING: "evaluate",
    RunState.EVALUATED: "promote",
}


def lease_seconds(settings: Settings) -> float:
    return settings.eval_tick_seconds + LEASE_MARGIN_SECONDS


def file_name(dataset: str, version: str, split: str) -> str:
    """The filename a split is uploaded under: unique per dataset version + split (find-or-create key)."""
    return f"vt-{dataset}-{version}-{split}.jsonl"


# --------------------------------------------------------------------------------------------------
# entry points
# --------------------------------------------------------------------------------------------------
def advance_all_runs(settings: Settings) -> dict[str, str]:
    """One timer tick: advance every run that has work left (each within ``eval_tick_seconds``), delete
    production deployments whose rollback window has passed, and continue scheduled evaluations.
    One run's trouble never stops the others. Returns ``{"<dataset>/<version>": state}`` of what it touched."""
    from shared.pipeline.scheduled import continue_scheduled_evaluations

    pipeline = Pipeline(settings)
    touched: dict[str, str] = {}
    tick_deadline = time.monotonic() + TICK_BUDGET_FACTOR * settings.eval_tick_seconds
    # Quick steps first (polls, deploys, cleanup), then the evaluations, which use what time is left.
    runs = sorted(
        (r for r in pipeline.store.list(unsettled_only=True) if needs_work(r)),
        key=lambda r: r.state is RunState.EVALUATING,
    )
    for run in runs:
        deadline = min(time.monotonic() + settings.eval_tick_seconds, tick_deadline)
        if deadline <= time.monotonic():
            log.info("tick budget used up; %s waits for the next tick", run.key)
            continue
        try:
            result = advance_run(pipeline, run.dataset, run.version, deadline=deadline)
        except Exception:  # noqa: BLE001 - isolate runs; the error is logged and retried next tick
            log.exception("advancing %s failed", run.key)
            continue
        if result is not None:
            touched[result.key] = result.state.value
    for dataset in pipeline.store.datasets():
        try:
            retire_due_deployments(pipeline, dataset)
        except Exception:  # noqa: BLE001
            log.exception("retiring old production deployments of %s failed", dataset)
    try:
        continue_scheduled_evaluations(pipeline)
    except Exception:  # noqa: BLE001
        log.exception("continuing scheduled evaluations failed")
    return touched


def needs_work(run: Run) -> bool:
    """True while a run is live, or terminal with cleanup or its final report still to do."""
    if not run.terminal:
        return True
    return bool(
        _deployments_to_delete(run)
        or _files_to_delete(run)
        or _job_to_cancel(run)
        or run.report_written_for != run.state.value
    )


def advance_run(
    pipeline: Pipeline, dataset: str, version: str, *, deadline: float, wait_for_files: float = 0.0
) -> Run | None:
    """Advance one run until it waits on something remote, hits ``deadline`` (``time.monotonic()``), or
    is done. ``wait_for_files``: seconds to wait for uploaded files to be processed (the training trigger
    waits a little so the job starts without waiting for the next tick). Returns the run as saved, or None
    when another worker holds it."""
    run = pipeline.store.claim(dataset, version, seconds=lease_seconds(pipeline.settings))
    if run is None:
        return None
    try:
        for _ in range(STEPS_PER_TICK):
            if not retry_due(run) or time.monotonic() >= deadline:
                break
            settings = run.effective_settings(pipeline.settings)
            retry_before = run.retry
            try:
                progressed = _step(pipeline, settings, run, deadline=deadline, wait_for_files=wait_for_files)
                if run.retry is not None and run.retry is retry_before:
                    # The step worked: retries are bounded per run of consecutive failures, not per stage
                    # lifetime (a 4 h training must not fail after a few blips hours apart).
                    run.retry = None
            except ConcurrentUpdateError:
                raise
            except Exception as error:  # noqa: BLE001 - classified and recorded on the run
                progressed = _record_error(run, error, settings)
            pipeline.store.save(run)
            if not progressed:
                break
        run.lease = None
        return pipeline.store.save(run)
    except ConcurrentUpdateError:
        log.warning("%s was changed by another worker; leaving it to them", run.key)
        return None


def _record_error(run: Run, error: Exception, settings: Settings) -> bool:
    if run.terminal:  # cleanup of a finished run: log, keep the run as it is, try again next tick
        log.warning("%s: cleanup failed (will retry): %s", run.key, error)
        run.note(f"cleanup: {error}")
        run.retry = RetryState(
            stage="cleanup",
            attempts=1,
            next_attempt_at=utcnow() + timedelta(seconds=settings.retry_base_seconds),
            last_error=str(error),
        )
        return False
    stage = STAGES.get(run.state, run.state.value)
    log.warning("%s: %s step failed: %s", run.key, stage, error)
    return record_step_error(run, stage, error, settings)  # failed -> progressed (cleanup follows)


def _step(
    pipeline: Pipeline, settings: Settings, run: Run, *, deadline: float, wait_for_files: float
) -> bool:
    if run.terminal:
        return _finish(pipeline, settings, run)
    handler = {
        RunState.CONVERTED: _check_budget,
        RunState.UPLOADING: _upload_and_start_job,
        RunState.TRAINING: _poll_job,
        RunState.TRAINED: _deploy_candidate,
        RunState.DEPLOYING: _poll_candidate_deployment,
        RunState.DEPLOYED: _plan_evaluation,
        RunState.EVALUATING: _evaluate,
        RunState.EVALUATED: _decide_and_act,
    }[run.state]
    return handler(pipeline, settings, run, deadline=deadline, wait_for_files=wait_for_files)


# --------------------------------------------------------------------------------------------------
# converted -> uploading (or over_budget)
# --------------------------------------------------------------------------------------------------
# The service refuses a fine-tuning file with fewer examples than this (training or validation).
MIN_FILE_EXAMPLES = 10


def untrainable_reason(splits: dict[str, dict[str, Any]]) -> str | None:
    """Why a converted version must not be trained (checked before anything is uploaded), or None.

    A version with no test example could never be evaluated, so it could never be promoted: training it
    would only spend money."""
    test_examples = int(splits.get("test", {}).get("examples", 0))
    if test_examples == 0:
        return (
            "the test split is empty, so the fine-tuned model could not be evaluated; nothing was uploaded. "
            "Add images (without given splits about 10% of each label go to test) or a test/<label>/ folder, "
            "and drop the _READY marker again."
        )
    return None


def fill_from_manifest(run: Run, manifest: dict[str, Any]) -> None:
    """Copy what the run needs from the version's manifest (labels, split counts, estimate)."""
    run.labels = list(manifest.get("labels", []))
    run.splits = {
        name: {"examples": int(split.get("examples", 0)), "per_label": dict(split.get("per_label", {}))}
        for name, split in (manifest.get("splits") or {}).items()
    }
    run.estimate = dict(manifest.get("estimate") or {})


def budget_check(settings: Settings, estimate: dict[str, Any]) -> tuple[int, float, str | None]:
    """(estimated training tokens, estimated USD, why it is over budget or None). The epochs are the
    configured ones when set, else the converter's estimate (the service picks epochs itself then)."""
    per_epoch = int(estimate.get("tokens_per_epoch") or 0)
    epochs = settings.n_epochs or int(estimate.get("epochs") or 1)
    tokens = per_epoch * epochs if per_epoch else int(estimate.get("training_tokens") or 0)
    usd = tokens * settings.price_training_per_1m_tokens / 1e6
    problems = []
    if tokens > settings.max_training_tokens:
        problems.append(
            f"{tokens:,} estimated training tokens is over the limit of {settings.max_training_tokens:,}"
        )
    if usd > settings.max_run_usd:
        problems.append(
            f"the estimated training cost ${usd:,.2f} is over the budget of ${settings.max_run_usd:,.2f}"
        )
    reason = None
    if problems:
        reason = (
            "; ".join(problems)
            + f" ({per_epoch:,} tokens per epoch x {epochs} epoch(s) at ${settings.price_training_per_1m_tokens:g} per 1M)."
            + " Nothing was uploaded. To train it, raise the limit (VISIONTUNE_MAX_TRAINING_TOKENS /"
            + " VISIONTUNE_MAX_RUN_USD, or"
            + ' {"budget_usd": ..., "max_training_tokens": ...} in the _READY marker, which wins over the'
            + " settings) and drop the _READY marker again: the run is checked again and continues if it fits."
        )
    return tokens, usd, reason


def _check_budget(pipeline: Pipeline, settings: Settings, run: Run, **_: Any) -> bool:
    from shared.reporting.schema import Failure

    if not run.labels:
        manifest = pipeline.manifest(run.dataset, run.version)
        if manifest is None:  # the run is created just before the version is published: wait for it
            return False
        fill_from_manifest(run, manifest)
    problem = untrainable_reason(run.splits)
    if problem is not None:
        run.fail("preflight", problem)
        return True
    tokens, usd, reason = budget_check(settings, run.estimate)
    if reason is not None:
        run.failure = Failure(stage="budget", message=reason, at=utcnow())
        run.transition(RunState.OVER_BUDGET, reason)
        return True
    files = []
    validation_examples = int(run.splits.get("validation", {}).get("examples", 0))
    for split in TRAINING_SPLITS:
        if split == "validation" and 0 < validation_examples < MIN_FILE_EXAMPLES:
            run.note(
                f"the validation split has {validation_examples} example(s), fewer than the "
                f"{MIN_FILE_EXAMPLES} a fine-tuning file needs: training without a validation file"
            )
            continue
        blob = training_prefix(run.dataset, run.version) + f"{split}.jsonl"
        client = pipeline.training.get_blob_client(blob)
        size = client.get_blob_properties().size if client.exists() else 0
        if split == "train" and not size:
            raise ValueError(f"training/{blob} is missing or empty")
        if size:
            files.append(
                UploadedFile(
                    split=split, name=file_name(run.dataset, run.version, split), blob=blob, size=size
                )
            )
    run.files = files
    run.transition(RunState.UPLOADING, f"within budget: ~{tokens:,} training tokens, ~${usd:,.2f}")
    return True


# How long a re-dropped marker waits for another worker's lease on an over_budget run (e.g. the timer
# writing its report) before giving up (the trigger retries).
RECHECK_ATTEMPTS = 10
RECHECK_WAIT_SECONDS = 1.0


def recheck_over_budget(
    pipeline: Pipeline, dataset: str, version: str, overrides: dict[str, Any]
) -> Run | None:
    """A ``_READY`` marker was dropped again for a version whose run is ``over_budget`` (the budget is not
    part of the version, so the drop converts to the same one): check the budget again with the new
    marker's ``overrides`` and the current settings.

    Fits now: the run goes back to ``converted`` with the reason on its timeline, and the next
    ``advance_runs`` tick continues it. Still over: it stays ``over_budget`` with the new reason and its
    report is written again. The change is saved under the run's lease with If-Match, so of concurrent
    or repeated drops exactly one re-opens the run; the others find it moved on and do nothing. Any other
    state: nothing to do. Returns the run as saved or found (None when there is none); raises
    ``ConcurrentUpdateError`` when another worker kept the run leased (a trigger retry is then right)."""
    from shared.pipeline.reports import publish_index, publish_run_report

    for _ in range(RECHECK_ATTEMPTS):
        run = pipeline.store.get(dataset, version)
        if run is None or run.state is not RunState.OVER_BUDGET:
            return run
        claimed = pipeline.store.claim(dataset, version, seconds=lease_seconds(pipeline.settings))
        if claimed is None:
            time.sleep(RECHECK_WAIT_SECONDS)
            continue
        changed = _recheck_budget(pipeline.settings, claimed, overrides)
        claimed.lease = None
        try:
            saved = pipeline.store.save(claimed)
        except ConcurrentUpdateError:
            continue  # someone else wrote first: read again
        if changed:
            publish_run_report(pipeline, saved)
            publish_index(pipeline, dataset)
            if saved.terminal:
                saved.report_written_for = saved.state.value
                try:
                    saved = pipeline.store.save(saved)
                except ConcurrentUpdateError:
                    pass  # report_written_for stays unset: the timer writes the report again
        return saved
    raise ConcurrentUpdateError(
        f"{dataset}/{version} stayed leased by another worker; the budget was not checked again"
    )


def _recheck_budget(settings: Settings, run: Run, overrides: dict[str, Any]) -> bool:
    """Apply a re-dropped marker's ``overrides`` to an over_budget ``run`` and check the budget again
    (see ``recheck_over_budget``). Returns True when the run changed."""
    from shared.reporting.schema import Failure

    if run.state is not RunState.OVER_BUDGET:
        return False
    previous = run.overrides
    run.overrides = dict(overrides)
    effective = run.effective_settings(settings)
    tokens, usd, reason = budget_check(effective, run.estimate)
    if reason is None:
        run.failure = None
        run.transition(
            RunState.CONVERTED,
            f"the _READY marker was dropped again: ~{tokens:,} training tokens, ~${usd:,.2f} now fit the "
            f"limits ({effective.max_training_tokens:,} tokens, ${effective.max_run_usd:,.2f}); continuing",
        )
        return True
    if run.failure is not None and run.failure.message == reason and previous == run.overrides:
        return False  # a replay of the same drop: nothing new to say
    run.failure = Failure(stage="budget", message=reason, at=utcnow())
    run.report_written_for = None
    run.note(f"the _READY marker was dropped again: still over budget: {reason}")
    return True


# --------------------------------------------------------------------------------------------------
# uploading -> training
# --------------------------------------------------------------------------------------------------
def _upload_and_start_job(
    pipeline: Pipeline, settings: Settings, run: Run, *, deadline: float, wait_for_files: float, **_: Any
) -> bool:
    from shared.aoai.files import file_state, upload_file
    from shared.storage import open_blob_reader

    client = pipeline.openai
    for uploaded in run.files:
        if uploaded.file_id is None:
            run.intent = {
                "action": "upload_file",
                "split": uploaded.split,
                "name": uploaded.name,
                "at": utcnow().isoformat(),
            }
            pipeline.store.save(run)
            blob = pipeline.training.get_blob_client(uploaded.blob)
            uploaded.file_id = upload_file(
                client,
                name=uploaded.name,
                size=uploaded.size,
                open_stream=lambda blob=blob: open_blob_reader(blob),
                purpose="fine-tune",
            )
            run.intent = None
            run.note(f"uploaded {uploaded.split} as {uploaded.file_id}")
            return True

    wait_until = min(deadline, time.monotonic() + wait_for_files)
    while True:
        states = {f.split: file_state(client, f.file_id) for f in run.files}
        for uploaded in run.files:
            uploaded.status = states[uploaded.split].status
        broken = [(f, states[f.split]) for f in run.files if states[f.split].status == "error"]
        if broken:
            run.fail("upload", "; ".join(f"{f.name} ({f.file_id}): {s.error}" for f, s in broken))
            return True
        if all(s.processed for s in states.values()):
            break
        if time.monotonic() + FILE_POLL_SECONDS > wait_until:
            return False
        time.sleep(FILE_POLL_SECONDS)

    from shared.aoai.finetune import create_job, make_suffix

    model = settings.base_model
    if settings.continue_from_production:
        production, _ = pipeline.production(run.dataset)
        if production and production.get("model"):
            model = str(production["model"])
    run.job.model = model
    run.intent = {"action": "create_job", "model": model, "at": utcnow().isoformat()}
    pipeline.store.save(run)
    train = run.file("train")
    validation = run.file("validation")
    job_id = create_job(
        client,
        model=model,
        training_file=str(train.file_id),
        validation_file=validation.file_id if validation else None,
        suffix=make_suffix(run.dataset),
        seed=settings.seed,
        n_epochs=settings.n_epochs,
        batch_size=settings.batch_size,
        learning_rate_multiplier=settings.learning_rate_multiplier,
        training_type=settings.training_type,
    )
    run.job.job_id = job_id
    run.job.started_at = utcnow()
    run.intent = None
    run.transition(RunState.TRAINING, f"fine-tuning job {job_id} on {model}")
    return True


# --------------------------------------------------------------------------------------------------
# training -> trained
# --------------------------------------------------------------------------------------------------
def _poll_job(pipeline: Pipeline, settings: Settings, run: Run, **_: Any) -> bool:
    from shared.aoai.finetune import job_snapshot

    snapshot = job_snapshot(pipeline.openai, str(run.job.job_id))
    job = run.job
    changed = snapshot.status != job.status
    job.status = snapshot.status
    job.events = snapshot.events
    job.checkpoints = snapshot.checkpoints
    job.results = snapshot.results
    job.trained_tokens = snapshot.trained_tokens
    job.hyperparameters = dict(snapshot.hyperparameters)
    job.error = snapshot.error
    if snapshot.created_at:
        job.started_at = snapshot.created_at
    if changed and not snapshot.terminal:
        run.note(f"job {job.job_id}: {snapshot.status}")
    if not snapshot.terminal:
        return False
    job.finished_at = snapshot.finished_at or utcnow()
    if snapshot.succeeded:
        if not snapshot.fine_tuned_model:
            raise RuntimeError(f"job {job.job_id} succeeded without a fine_tuned_model")
        job.fine_tuned_model = snapshot.fine_tuned_model
        run.transition(
            RunState.TRAINED, f"{snapshot.fine_tuned_model} ({snapshot.trained_tokens or 0:,} tokens)"
        )
    else:
        message = snapshot.error or f"the job ended {snapshot.status}"
        run.fail(
            "training",
            f"job {job.job_id} {snapshot.status}: {message}",
            cancelled=snapshot.status == "cancelled",
        )
    return True


# --------------------------------------------------------------------------------------------------
# trained -> deploying -> deployed
# --------------------------------------------------------------------------------------------------
def _deploy(pipeline: Pipeline, settings: Settings, run: Run, info: DeploymentInfo) -> None:
    """Record the intent, then ask for the deployment (non-blocking, find-or-create by name). Gives up
    (``DeploymentError``, with the service's last message) after the stage's bounded attempts."""
    from shared.aoai.deployments import DeploymentError

    limit = STAGE_MIN_ATTEMPTS["deploy"]
    if info.attempts >= limit:
        last = f"; last error: {info.last_error}" if info.last_error else ""
        raise DeploymentError(f"deployment {info.name} did not succeed after {info.attempts} attempts{last}")
    info.attempts += 1
    info.requested_at = info.requested_at or utcnow()
    run.intent = {"action": "deploy", "name": info.name, "at": utcnow().isoformat()}
    pipeline.store.save(run)
    state = pipeline.deployments.begin_create(
        info.name, model=info.model, sku=info.sku, capacity=settings.deployment_capacity
    )
    info.state = state.provisioning_state
    info.operation_url = state.operation_url or info.operation_url
    run.intent = None


def _deploy_candidate(pipeline: Pipeline, settings: Settings, run: Run, **_: Any) -> bool:
    from shared.aoai.deployments import deployable_sku, deployment_name

    if run.candidate is None:
        model = str(run.job.fine_tuned_model)
        sku = deployable_sku(settings.candidate_sku, model, fallback=settings.production_sku)
        if sku != settings.candidate_sku:
            run.note(f"{settings.candidate_sku} is for the gpt-4.1 family only: {model} is deployed as {sku}")
        run.candidate = DeploymentInfo(
            name=deployment_name(run.dataset, run.version, "cand"), model=model, sku=sku
        )
    _deploy(pipeline, settings, run, run.candidate)
    run.transition(RunState.DEPLOYING, f"{run.candidate.name} ({run.candidate.sku}): {run.candidate.state}")
    return True


def _poll_candidate_deployment(pipeline: Pipeline, settings: Settings, run: Run, **_: Any) -> bool:
    from shared.aoai.deployments import TransientDeploymentError

    assert run.candidate is not None
    state = pipeline.deployments.get(run.candidate.name, operation_url=run.candidate.operation_url)
    if state is None:
        run.transition(RunState.TRAINED, f"{run.candidate.name} is not there; asking again")
        return True
    run.candidate.state = state.provisioning_state
    if state.succeeded:
        run.candidate.ready_at = utcnow()
        run.transition(RunState.DEPLOYED, f"{run.candidate.name} is ready")
        return True
    if state.failed:
        run.candidate.last_error = state.error or state.provisioning_state
        run.transition(RunState.TRAINED, f"{run.candidate.name} provisioning failed: {state.error}")
        # counted as a transient deploy error: backoff, and bounded by the deployment's attempts
        record_step_error(
            run,
            "deploy",
            TransientDeploymentError(f"deployment {run.candidate.name} failed: {run.candidate.last_error}"),
            settings,
        )
        return False
    return False


# --------------------------------------------------------------------------------------------------
# deployed -> evaluating -> evaluated
# --------------------------------------------------------------------------------------------------
def _test_items(pipeline: Pipeline, run: Run) -> list[Any]:
    from shared.pipeline.evaluate import load_test_items

    cache = pipeline.__dict__.setdefault("_test_items", {})
    if run.key not in cache:
        cache[run.key] = load_test_items(pipeline, run.dataset, run.version)
    return cache[run.key]


def _plan_evaluation(pipeline: Pipeline, settings: Settings, run: Run, **_: Any) -> bool:
    from shared.pipeline.evaluate import base_role, incumbent_role
    from shared.pipeline.models import RoleProgress

    busy = [
        other.version
        for other in pipeline.store.list(run.dataset)
        if other.version != run.version and other.state in (RunState.EVALUATING, RunState.EVALUATED)
    ]
    if busy:  # one evaluation per dataset at a time, so each is judged against the production it will replace
        if not (run.transitions and run.transitions[-1].detail.startswith("waiting for")):
            run.note(f"waiting for the evaluation of {', '.join(busy)} to finish")
            return True
        return False
    items = _test_items(pipeline, run)
    if not items:
        run.fail("evaluate", "the test split is empty: there is nothing to evaluate the candidate on")
        return True
    assert run.candidate is not None
    roles = {
        "candidate": RoleProgress(
            role="candidate",
            model=run.candidate.model,
            deployment=run.candidate.name,
            method="realtime",
            total=len(items),
        ),
    }
    production, _ = pipeline.production(run.dataset)
    if production and production.get("version") != run.version:
        deployed = pipeline.deployments.get(str(production.get("deployment")))
        if deployed is not None and deployed.succeeded:
            roles["incumbent"] = incumbent_role(production, len(items))
        else:
            run.note(
                f"the production deployment {production.get('deployment')} is not available; "
                "the candidate is judged against the base model"
            )
    roles["base"] = base_role(settings, len(items))
    run.evaluation = roles
    against = "the incumbent " + roles["incumbent"].model if "incumbent" in roles else "the base model"
    run.transition(RunState.EVALUATING, f"{len(items)} test examples; judged against {against}")
    return True


def _evaluate(pipeline: Pipeline, settings: Settings, run: Run, *, deadline: float, **_: Any) -> bool:
    from shared.evaluation.metrics import compute_metrics
    from shared.pipeline.evaluate import advance_evaluation, load_examples

    items = _test_items(pipeline, run)
    prefix = pipeline.store.side_blob_name(run.dataset, run.version, "")
    progressed = advance_evaluation(
        pipeline,
        run.evaluation,
        prefix=prefix,
        tag=f"{run.dataset}-{run.version}",
        items=items,
        deadline=deadline,
    )
    if not all(role.done for role in run.evaluation.values()):
        return progressed
    summary = []
    for name, role in run.evaluation.items():
        examples = load_examples(pipeline, prefix, name)
        metrics = compute_metrics(run.labels, examples)
        run.scores[name] = metrics.accuracy
        summary.append(
            f"{name} {metrics.accuracy:.1%}" + (f" ({metrics.errors} errors)" if metrics.errors else "")
        )
        if role.note:
            run.note(f"{name}: {role.note}")
    run.transition(RunState.EVALUATED, ", ".join(summary))
    return True


# --------------------------------------------------------------------------------------------------
# evaluated -> promoted | rejected
# --------------------------------------------------------------------------------------------------
MAX_ERROR_SHARE = 0.5


def _decide_and_act(pipeline: Pipeline, settings: Settings, run: Run, **_: Any) -> bool:
    if run.decision is None:
        return _decide(pipeline, settings, run)
    if not run.decision.promoted:
        _record_incumbent_measurement(pipeline, run)
        run.transition(RunState.REJECTED, run.decision.reason)
        return True
    return _promote(pipeline, settings, run)


def _decide(pipeline: Pipeline, settings: Settings, run: Run) -> bool:
    from shared.evaluation.gate import decide_promotion
    from shared.pipeline.evaluate import error_share, load_examples

    prefix = pipeline.store.side_blob_name(run.dataset, run.version, "")
    baseline_role = "incumbent" if "incumbent" in run.evaluation else "base"
    candidate = load_examples(pipeline, prefix, "candidate")
    baseline = load_examples(pipeline, prefix, baseline_role)
    for name, examples in (("candidate", candidate), (baseline_role, baseline)):
        if error_share(examples) > MAX_ERROR_SHARE:
            failed = [e for e in examples if e.failed]
            first = failed[0].error if failed else "no examples were scored"
            run.fail(
                "evaluate",
                f"{len(failed)} of {len(examples)} {name} requests got no answer, too many to "
                f"judge the candidate; first error: {first}",
            )
            return True
    # Requests that got no answer say nothing about the model: the gate pairs only answered examples.
    decision = decide_promotion(
        [e for e in candidate if not e.failed],
        [e for e in baseline if not e.failed],
        baseline_role=baseline_role,
        labels=run.labels,
        margin=settings.promotion_margin,
        p_value_threshold=settings.promotion_p_value,
    )
    run.decision = decision
    run.note(decision.reason)
    return True


def _promote(pipeline: Pipeline, settings: Settings, run: Run) -> bool:
    from shared.aoai.deployments import deployment_name

    assert run.candidate is not None
    serving = run.candidate
    if settings.production_sku != run.candidate.sku:
        if run.production_deployment is None:
            run.production_deployment = DeploymentInfo(
                name=deployment_name(run.dataset, run.version, "prod"),
                model=run.candidate.model,
                sku=settings.production_sku,
            )
        info = run.production_deployment
        if info.ready_at is None:
            state = pipeline.deployments.get(info.name, operation_url=info.operation_url)
            if state is not None and state.failed:
                info.last_error = state.error or state.provisioning_state
                run.note(f"{info.name} provisioning failed: {info.last_error}")
            if state is None or state.failed:
                _deploy(pipeline, settings, run, info)
                run.note(f"deploying {info.name} ({info.sku}) for production")
                return True
            info.state = state.provisioning_state
            if not state.succeeded:
                return False
            info.ready_at = utcnow()
        serving = info
    _write_production(pipeline, settings, run, serving)
    run.transition(RunState.PROMOTED, f"{serving.model} serves production as {serving.name}")
    return True


def _write_production(pipeline: Pipeline, settings: Settings, run: Run, serving: DeploymentInfo) -> None:
    """Make ``serving`` the dataset's production (production.json, ETag-guarded); the previous production
    deployment is kept for the rollback window, then deleted by ``retire_due_deployments``."""
    from shared.reporting.schema import ProductionHistoryPoint

    for _ in range(10):
        record, etag = pipeline.production(run.dataset)
        if record and record.get("version") == run.version:
            return  # already promoted (a replay after a crash)
        now = utcnow()
        retired = list((record or {}).get("retired", []))
        if record:
            retired.append(
                {
                    "version": record.get("version"),
                    "model": record.get("model"),
                    "deployment": record.get("deployment"),
                    "retired_at": now.isoformat(),
                    "delete_after": (now + timedelta(hours=settings.rollback_window_hours)).isoformat(),
                    "deleted_at": None,
                }
            )
        accuracy = run.scores.get("candidate", 0.0)
        history = list((record or {}).get("history", []))
        history.append(
            history_point(
                ProductionHistoryPoint(
                    at=now, version=run.version, model=serving.model, accuracy=accuracy, source="run"
                ),
                run.version,
            )
        )
        baseline_role = run.decision.baseline_role if run.decision else None
        new_record = {
            "dataset": run.dataset,
            "version": run.version,
            "model": serving.model,
            "deployment": serving.name,
            "sku": serving.sku,
            "promoted_at": now.isoformat(),
            "accuracy": accuracy,
            "baseline_role": baseline_role,
            "baseline_accuracy": run.scores.get(baseline_role or "base"),
            "reason": run.decision.reason if run.decision else "",
            "previous_version": (record or {}).get("version"),
            "retired": retired,
            "history": history,
        }
        try:
            pipeline.write_production(run.dataset, new_record, etag)
            return
        except ConcurrentUpdateError:
            continue
    raise ConcurrentUpdateError(f"{run.dataset}/production.json kept changing")


def history_point(point: Any, test_set_version: str) -> dict[str, Any]:
    """A production history entry for production.json: the report schema's point plus the dataset version
    whose test split was measured (only measurements on the same test set are compared)."""
    return {**point.model_dump(mode="json"), "test_set_version": test_set_version}


def _record_incumbent_measurement(pipeline: Pipeline, run: Run) -> None:
    """A rejected run measured production (the incumbent) on its own, newer test set: add that point to
    the production history, so later scheduled evaluations compare like with like."""
    from shared.reporting.schema import ProductionHistoryPoint

    incumbent = run.evaluation.get("incumbent")
    if incumbent is None or "incumbent" not in run.scores:
        return
    for _ in range(10):
        record, etag = pipeline.production(run.dataset)
        if not record or record.get("version") != incumbent.incumbent_version:
            return  # production changed meanwhile: the measurement is of a model no longer serving
        history = record.setdefault("history", [])
        if any(p.get("test_set_version") == run.version and p.get("source") == "run" for p in history):
            return
        history.append(
            history_point(
                ProductionHistoryPoint(
                    at=utcnow(),
                    version=str(record["version"]),
                    model=incumbent.model,
                    accuracy=run.scores["incumbent"],
                    source="run",
                ),
                run.version,
            )
        )
        try:
            pipeline.write_production(run.dataset, record, etag)
            return
        except ConcurrentUpdateError:
            continue


def retire_due_deployments(pipeline: Pipeline, dataset: str) -> list[str]:
    """Delete previous production deployments whose rollback window has passed; returns their names."""
    from datetime import datetime

    record, etag = pipeline.production(dataset)
    if not record:
        return []
    now = utcnow()
    deleted = []
    for entry in record.get("retired", []):
        if entry.get("deleted_at") or not entry.get("deployment"):
            continue
        if datetime.fromisoformat(entry["delete_after"]) > now or entry["deployment"] == record.get(
            "deployment"
        ):
            continue
        pipeline.deployments.delete(entry["deployment"])
        entry["deleted_at"] = now.isoformat()
        deleted.append(entry["deployment"])
    if deleted:
        try:
            pipeline.write_production(dataset, record, etag)
        except ConcurrentUpdateError:
            pass  # someone promoted meanwhile; the deletions are idempotent and get recorded next tick
        log.info("%s: deleted retired production deployment(s) %s", dataset, ", ".join(deleted))
    return deleted


# --------------------------------------------------------------------------------------------------
# terminal: clean up, report
# --------------------------------------------------------------------------------------------------
def _deployments_to_delete(run: Run) -> list[DeploymentInfo]:
    live = run.live_deployments()
    if run.state is RunState.PROMOTED:
        serving = run.production_deployment if run.production_deployment is not None else run.candidate
        return [d for d in live if d is not serving]
    return live


def _files_to_delete(run: Run) -> list[str]:
    ids = [f.file_id for f in run.files if f.file_id and not f.deleted]
    for role in run.evaluation.values():
        ids.extend(role.remote_files)
    return ids


def _job_to_cancel(run: Run) -> bool:
    from shared.aoai.finetune import TERMINAL_JOB_STATUSES

    return (
        bool(run.job.job_id)
        and run.state is not RunState.PROMOTED
        and (run.job.status not in TERMINAL_JOB_STATUSES)
        and run.state in (RunState.FAILED, RunState.CANCELLED)
    )


def _finish(pipeline: Pipeline, settings: Settings, run: Run, **_: Any) -> bool:
    """Delete what a finished run no longer needs (deployments first: they cost by the hour), cancel a
    job still running, delete its files from the resource (file quota), then write the report + index."""
    if _job_to_cancel(run):
        from shared.aoai.finetune import cancel_job

        cancel_job(pipeline.openai, str(run.job.job_id))
        run.job.status = "cancelled"
        run.note(f"cancelled job {run.job.job_id}")
        return True
    for info in _deployments_to_delete(run):
        pipeline.deployments.delete(info.name)
        info.deleted_at = utcnow()
        run.note(f"deleted deployment {info.name}")
        return True
    if _files_to_delete(run):
        from shared.aoai.files import delete_file

        for uploaded in run.files:
            if uploaded.file_id and not uploaded.deleted:
                delete_file(pipeline.openai, uploaded.file_id)
                uploaded.deleted = True
        for role in run.evaluation.values():
            for file_id in list(role.remote_files):
                delete_file(pipeline.openai, file_id)
                role.remote_files.remove(file_id)
        run.note("deleted the run's files from the Azure OpenAI resource")
        return True
    if run.report_written_for != run.state.value:
        from shared.pipeline.reports import publish_index, publish_run_report

        publish_run_report(pipeline, run)
        run.report_written_for = run.state.value
        pipeline.store.save(run)
        publish_index(pipeline, run.dataset)
        return True
    return False
