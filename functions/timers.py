"""Timers: move unfinished runs forward, and re-evaluate production on a schedule."""

from __future__ import annotations

import logging

import azure.functions as func

bp = func.Blueprint()
log = logging.getLogger(__name__)


@bp.function_name("advance_runs")
@bp.timer_trigger(arg_name="timer", schedule="%VISIONTUNE_ADVANCE_SCHEDULE%", run_on_startup=False)
def advance_runs(timer: func.TimerRequest) -> None:
    """Poll jobs, deploy, evaluate, decide, promote and clean up, in bounded steps per tick."""
    if timer.past_due:
        log.info("advance_runs is past due; running now")
    from shared.pipeline.advance import advance_all_runs
    from shared.settings import load_settings
    from shared.telemetry import invocation

    settings = load_settings()
    with invocation("advance_runs", settings):
        advance_all_runs(settings)


@bp.function_name("scheduled_evaluation")
@bp.timer_trigger(arg_name="timer", schedule="%VISIONTUNE_EVALUATION_SCHEDULE%", run_on_startup=False)
def scheduled_evaluation(timer: func.TimerRequest) -> None:
    """Re-evaluate every production model (and the base model) on its latest test set."""
    from shared.pipeline.scheduled import evaluate_production
    from shared.settings import load_settings
    from shared.telemetry import invocation

    settings = load_settings()
    with invocation("scheduled_evaluation", settings):
        evaluate_production(settings)
