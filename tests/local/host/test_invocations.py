"""What the local functions host records of an invocation: the log records its handler emits."""

from __future__ import annotations

from local.host.invocations import InvocationLogs


def test_an_invocation_keeps_what_its_handler_logs_at_info_on_its_thread(make_host) -> None:
    """As the Python worker forwards logs: the root logger at INFO while the host lives, records the
    handler emits on its own thread attributed to the invocation, with their custom attributes."""
    import logging

    root = logging.getLogger()
    before = root.level
    host = make_host()
    assert root.getEffectiveLevel() <= logging.INFO
    invocation = host.tick("on_tick")
    assert invocation.log_count == 1, invocation.logs
    [record] = invocation.logs
    assert (record["level"], record["logger"], record["message"]) == ("INFO", "sample", "ticked")
    assert record["dimensions"]["sample.key"] == "value"
    assert "logs" not in invocation.to_json() and invocation.to_json()["log_count"] == 1
    host.stop()
    assert root.level == before and not any(isinstance(h, InvocationLogs) for h in root.handlers)
