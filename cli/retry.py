"""``visiontune retry DATASET VERSION``: restart a failed or cancelled run from the stage it stopped in,
reusing what exists (files, job, fine-tuned model). The next ``advance_runs`` tick moves it on."""

from __future__ import annotations

import argparse
import json

from cli.common import add_storage_arguments, command_settings, fail, storage_errors
from shared.pipeline.context import Pipeline
from shared.pipeline.retry import RETRYABLE_STATES, retry_run


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``retry``."""
    retry = subparsers.add_parser(
        "retry",
        help="restart a failed or cancelled run from where it stopped",
        description="Restart DATASET's run VERSION (failed or cancelled) from the stage it stopped in, "
        "reusing its files, job and fine-tuned model; the pipeline's next tick continues it.",
    )
    retry.add_argument("dataset", metavar="DATASET")
    retry.add_argument("version", metavar="VERSION")
    add_storage_arguments(retry)
    retry.set_defaults(handler=storage_errors(run_retry))


def run_retry(args: argparse.Namespace) -> int:
    settings = command_settings(args.settings)
    pipeline = Pipeline(settings)
    before = pipeline.store.get(args.dataset, args.version)
    if before is None:
        return fail(f"no run {args.dataset}/{args.version}; `visiontune status {args.dataset}` lists its versions")
    if before.state not in RETRYABLE_STATES:
        return fail(
            f"{args.dataset}/{args.version} is {before.state.value}; only failed or cancelled runs can be retried"
        )
    run = retry_run(pipeline, args.dataset, args.version, "visiontune retry")
    assert run is not None
    if args.json:
        print(json.dumps({"dataset": run.dataset, "version": run.version, "state": run.state.value}))
    else:
        print(f"{run.key}: restarting from {run.state.value} (was {before.state.value}); "
              "the pipeline's next tick continues it")
    return 0
