"""Queue triggers: receive batches from each trigger's queue and call the function per message, with the
dequeue count, visibility timeout and ``<queue>-poison`` rules of ``local.host.queues`` (host.json)."""

from __future__ import annotations

import logging
import threading
import time
import traceback
from concurrent.futures import Future
from typing import Any

from local.host.connections import Connections
from local.host.indexing import QUEUE_TRIGGER, FunctionInfo
from local.host.invocations import FAILED, POISONED, SUCCEEDED, Invocation, InvocationRunner
from local.host.queues import POISON_SUFFIX, RUNNING_VISIBILITY_SECONDS, QueueClients, QueueOptions

log = logging.getLogger("visiontune.local.host")


class QueueTriggers:
    """The queue-triggered functions of one host: receiving batches, dispatching onto ``pool``, poison."""

    def __init__(
        self,
        functions: list[FunctionInfo],
        runner: InvocationRunner,
        *,
        options: QueueOptions,
        connections: Connections,
    ) -> None:
        self.functions = [f for f in functions if f.trigger_type == QUEUE_TRIGGER]
        self.options = options
        self._connections = connections
        self._runner = runner
        self._lock = threading.Lock()
        self._in_flight: dict[str, int] = {}

    def _queues(self, info: FunctionInfo) -> QueueClients:
        return self._connections.queues(info.connection, info.name)

    def dispatch(self) -> list[Future[Invocation]]:
        """Receive one batch per queue trigger whose in-flight count is at or below ``newBatchThreshold``."""
        options = self.options
        futures: list[Future[Invocation]] = []
        for info in self.functions:
            if not info.queue_name:
                continue
            with self._lock:
                in_flight = self._in_flight.get(info.name, 0)
            if in_flight > options.new_batch_threshold:
                continue
            queue = self._queues(info).get(info.queue_name)
            messages = list(
                queue.receive_messages(
                    messages_per_page=options.batch_size,
                    max_messages=options.batch_size,
                    visibility_timeout=RUNNING_VISIBILITY_SECONDS,
                )
            )
            for message in messages:
                with self._lock:
                    self._in_flight[info.name] = self._in_flight.get(info.name, 0) + 1
                futures.append(self._runner.pool.submit(self.invoke, info, queue, message))
        return futures

    def watch(self, poll_interval: float) -> None:
        """``dispatch`` until the stop event is set, waiting ``poll_interval`` seconds after a scan that
        received nothing."""
        failing = False
        while not self._runner.stop.is_set():
            try:
                fired = self.dispatch()
                failing = False
            except Exception as error:  # storage down for a moment: say so once, keep polling
                if not failing:
                    log.warning("queue watcher: receiving messages failed: %s", error)
                failing = True
                fired = []
            if not fired:
                self._runner.stop.wait(poll_interval)

    def invoke(self, info: FunctionInfo, queue: Any, message: Any) -> Invocation:
        """Call ``info`` with one received ``message``; delete it on success, make it visible again after
        ``visibilityTimeout`` on failure, or move it to ``<queue>-poison`` (see ``local.host.queues``)."""
        from azure.functions.queue import QueueMessage  # the worker's type, with the dequeue count

        options = self.options
        invocation = Invocation(info.name, QUEUE_TRIGGER, f"{info.queue_name} {message.id}")
        invocation.attempts = message.dequeue_count or 1
        start = time.perf_counter()
        poison = self._queues(info)
        try:
            if (message.dequeue_count or 0) > options.max_dequeue_count:
                # Its earlier runs never finished (the host died): straight to the poison queue, no call.
                poison.get(f"{info.queue_name}{POISON_SUFFIX}").send_message(message.content)
                queue.delete_message(message)
                invocation.outcome = POISONED
                invocation.error = f"dequeue count {message.dequeue_count} above maxDequeueCount"
                return invocation
            try:
                body = options.decode(message.content)
                trigger = QueueMessage(
                    id=message.id,
                    body=body,
                    dequeue_count=message.dequeue_count,
                    expiration_time=message.expires_on,
                    insertion_time=message.inserted_on,
                    time_next_visible=message.next_visible_on,
                    pop_receipt=message.pop_receipt,
                )
                self._runner.call(info, trigger, {"QueueTrigger": body.decode("utf-8", "replace")}, invocation)
            except Exception:
                invocation.error = traceback.format_exc(limit=-3)
                if (message.dequeue_count or 1) >= options.max_dequeue_count:
                    poison.get(f"{info.queue_name}{POISON_SUFFIX}").send_message(message.content)
                    queue.delete_message(message)
                    invocation.outcome = POISONED
                else:
                    # visible again after visibilityTimeout; the next receive counts one more dequeue
                    queue.update_message(message, visibility_timeout=int(options.visibility_timeout))
                    invocation.outcome = FAILED
                return invocation
            queue.delete_message(message)
            invocation.outcome = SUCCEEDED
            return invocation
        finally:
            with self._lock:
                self._in_flight[info.name] = self._in_flight.get(info.name, 1) - 1
            self._runner.finish(invocation, start)
