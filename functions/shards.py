"""The fan-out's queue trigger: one message per shard of a large drop (``shared.pipeline.fanout``)."""

from __future__ import annotations

import azure.functions as func

from functions.bindings import STORAGE_CONNECTION
from shared.layout import SHARD_QUEUE

bp = func.Blueprint()


@bp.function_name("convert_shard")
@bp.queue_trigger(arg_name="message", queue_name=SHARD_QUEUE, connection=STORAGE_CONNECTION)
def convert_shard(message: func.QueueMessage) -> None:
    """Convert one shard; the shard that finishes last assembles and publishes the version. A failure is
    retried by the host (host.json ``maxDequeueCount``), then the message goes to ``<queue>-poison``."""
    import json

    from shared.pipeline.fanout import run_shard
    from shared.settings import load_settings
    from shared.telemetry import invocation

    settings = load_settings()
    body = message.get_body()
    dataset = json.loads(body).get("dataset", "")
    with invocation("convert_shard", settings, dataset=dataset):
        run_shard(settings, body, dequeue_count=message.dequeue_count or 1)
