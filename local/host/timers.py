"""Timer triggers: six-field NCRONTAB schedules (``%SETTING%`` already resolved at indexing). A timer is a
singleton (a tick that comes while the previous run still runs is skipped) and is never retried, as on
Azure; ``runOnStartup`` fires once when the host starts."""

from __future__ import annotations

import logging
import threading
import time
import traceback
from datetime import UTC, datetime, timedelta

from local.host.indexing import TIMER_TRIGGER, FunctionInfo
from local.host.invocations import FAILED, SUCCEEDED, Invocation, InvocationRunner
from local.host.ncrontab import Schedule, parse_schedule

log = logging.getLogger("visiontune.local.host")

# A timer that fires this much later than scheduled is reported as past due.
PAST_DUE_TOLERANCE = timedelta(seconds=5)


class TimerTriggers:
    """The timer-triggered functions of one host: the schedule loop and the calls on ``pool``."""

    def __init__(self, functions: list[FunctionInfo], runner: InvocationRunner) -> None:
        self._by_name = {f.name: f for f in functions if f.trigger_type == TIMER_TRIGGER}
        self.schedules: dict[str, Schedule] = {
            name: parse_schedule(f.schedule) for name, f in self._by_name.items() if f.schedule is not None
        }
        self._runner = runner
        self._lock = threading.Lock()
        self._running: set[str] = set()

    def run(self) -> None:
        """Fire the ``runOnStartup`` timers, then each timer when due, until the stop event is set."""
        now = datetime.now(UTC)
        due = {name: schedule.next_after(now) for name, schedule in self.schedules.items()}
        for name in self.schedules:
            if self._by_name[name].run_on_startup:
                self._fire(name, None)
        while not self._runner.stop.is_set():
            name, when = min(due.items(), key=lambda item: item[1])
            wait = (when - datetime.now(UTC)).total_seconds()
            if wait > 0:
                self._runner.stop.wait(min(wait, 1.0))
                continue
            self._fire(name, when)
            due[name] = self.schedules[name].next_after(max(when, datetime.now(UTC) - PAST_DUE_TOLERANCE))

    def tick(self, info: FunctionInfo) -> Invocation:
        """Run the timer ``info`` now (``past_due=False``) and wait for it."""
        return self._runner.pool.submit(self.invoke, info, None).result()

    def _fire(self, name: str, scheduled_for: datetime | None) -> None:
        with self._lock:
            if name in self._running:
                log.info(
                    "%s: previous run still in progress; skipping this tick (timers are singletons)", name
                )
                return
            self._running.add(name)
        self._runner.pool.submit(self.invoke, self._by_name[name], scheduled_for)

    def invoke(self, info: FunctionInfo, scheduled_for: datetime | None) -> Invocation:
        """Call ``info`` once with a ``TimerRequest`` (past due if it fires late; never retried)."""
        from azure.functions.timer import TimerRequest

        invocation = Invocation(info.name, TIMER_TRIGGER, info.schedule or "", schedule=info.schedule)
        start = time.perf_counter()
        invocation.attempts = 1  # timers are never retried
        try:
            now = datetime.now(UTC)
            past_due = scheduled_for is not None and now - scheduled_for > PAST_DUE_TOLERANCE
            request = TimerRequest(
                past_due=past_due,
                schedule_status={
                    "Last": (scheduled_for or now).isoformat(),
                    "Next": self.schedules[info.name].next_after(now).isoformat(),
                    "LastUpdated": now.isoformat(),
                },
                schedule={"AdjustForDST": True},
            )
            self._runner.call(info, request, {}, invocation)
            invocation.outcome = SUCCEEDED
        except Exception:
            invocation.outcome = FAILED
            invocation.error = traceback.format_exc(limit=-3)
        finally:
            with self._lock:
                self._running.discard(info.name)
            self._runner.finish(invocation, start)
        return invocation
