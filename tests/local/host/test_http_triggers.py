"""HTTP triggers and the admin routes of the local functions host, served on a local port."""

from __future__ import annotations

import json
import sys
import time

from tests.local.host.sample_host import http, read_calls, upload


def test_http_routes_and_admin(make_host, calls_file):
    host = make_host(http_port=0)
    host.start()
    base = host.http_url
    status, headers, body = http("GET", f"{base}/api/items/7?q=1", headers={"x-sample": "s"})
    assert (
        status == 200
        and headers["x-echo"] == "yes"
        and headers["Content-Type"].startswith("application/json")
    )
    assert json.loads(body) == {
        "method": "GET",
        "route_params": {"id": "7"},
        "params": {"q": "1"},
        "body": "",
        "header": "s",
    }
    status, _, body = http("POST", f"{base}/api/items/7/more", body=b"payload")
    assert status == 201
    assert (
        json.loads(body)["route_params"] == {"id": "7", "detail": "more"}
        and json.loads(body)["body"] == "payload"
    )
    assert http("GET", f"{base}/api/items/notanint")[0] == 404
    assert http("DELETE", f"{base}/api/items/7")[0] == 405
    assert http("GET", f"{base}/elsewhere")[0] == 404
    status, _, body = http("GET", f"{base}/api/boom")
    assert status == 500
    assert any(
        i.function_name == "boom" and i.outcome == "failed" and "boom" in i.error for i in host.history
    )

    assert json.loads(http("GET", f"{base}/admin/host/status")[2])["state"] == "Running"
    assert {f["name"] for f in json.loads(http("GET", f"{base}/admin/functions")[2])} == {
        "on_text",
        "on_archive",
        "on_tick",
        "echo",
        "boom",
    }
    status, _, body = http("POST", f"{base}/admin/functions/on_tick", body=b"{}")
    assert status == 202 and json.loads(body)["outcome"] == "succeeded"
    assert len(read_calls(calls_file, "on_tick")) == 1
    assert http("POST", f"{base}/admin/functions/missing", body=b"{}")[0] == 404


def test_http_routes_answer_while_long_blob_triggers_run(make_host, blob_service, fresh_container):
    """Issue 13: a request never waits behind long trigger work (its own pool, not the triggers')."""
    host = make_host(http_port=0, settings={"SAMPLE_DELAY": "6"}, max_workers=1, poll_interval=0.1)
    module = sys.modules[host.function("on_text").handler.__module__]
    module.active = 0
    for index in range(2):
        upload(blob_service, fresh_container, f"in/slow-{index}.txt", b"x")
    host.start()
    deadline = time.monotonic() + 20
    while module.active == 0:  # a long blob-triggered call is running and another one is queued
        assert time.monotonic() < deadline, "the blob trigger never ran"
        time.sleep(0.05)
    started = time.monotonic()
    status, _, body = http("GET", f"{host.http_url}/api/items/7")
    took = time.monotonic() - started
    assert status == 200 and json.loads(body)["route_params"] == {"id": "7"}
    assert took < 1.0, f"the route waited {took:.1f} s behind the blob trigger"
    assert module.active == 1  # still running when the answer came
