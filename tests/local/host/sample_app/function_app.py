"""A small function app for the local host's tests. Every call is appended as one JSON line to the file
named by the ``SAMPLE_CALLS_FILE`` app setting; the container comes from ``%SAMPLE_CONTAINER%`` so each
test can use a fresh one. Blob bodies steer the outcome: ``fail-always`` raises every time,
``fail-twice`` raises on the first two attempts of that blob version."""

from __future__ import annotations

import json
import logging
import os
import threading
import time

import azure.functions as func
import azurefunctions.extensions.bindings.blob as blob_sdk

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
_lock = threading.Lock()
active = 0  # invocations of on_text running right now, and the most seen at once (read by the tests)
most_active = 0


def _record(**call: object) -> int:
    """Append ``call``; returns how many earlier calls had the same ``key``."""
    path = os.environ["SAMPLE_CALLS_FILE"]
    with _lock:
        earlier = 0
        if os.path.exists(path):
            with open(path, encoding="utf-8") as existing:
                earlier = sum(1 for line in existing if json.loads(line).get("key") == call.get("key"))
        with open(path, "a", encoding="utf-8") as calls:
            calls.write(json.dumps(call) + "\n")
    return earlier


@app.function_name("on_text")
@app.blob_trigger(arg_name="blob", path="%SAMPLE_CONTAINER%/in/{name}.txt", connection="AzureWebJobsStorage")
@app.blob_output(
    arg_name="upper", path="%SAMPLE_CONTAINER%/out/{name}.upper", connection="AzureWebJobsStorage"
)
def on_text(blob: func.InputStream, upper: func.Out[str]) -> None:
    body = blob.read()
    properties = blob.blob_properties or {}
    earlier = _record(
        function="on_text",
        key=f"{blob.name}@{properties.get('ETag')}",
        name=blob.name,
        body=body.decode(),
        length=blob.length,
        uri=blob.uri,
        etag=properties.get("ETag"),
        metadata=blob.metadata,
    )
    global active, most_active
    with _lock:
        active += 1
        most_active = max(most_active, active)
    time.sleep(float(os.environ.get("SAMPLE_DELAY", "0")))
    with _lock:
        active -= 1
    if body.startswith(b"fail-always") or (body.startswith(b"fail-twice") and earlier < 2):
        raise RuntimeError(f"refusing {blob.name} (attempt {earlier + 1})")
    upper.set(body.decode().upper())


@app.function_name("on_archive")
@app.blob_trigger(arg_name="client", path="%SAMPLE_CONTAINER%/big/{name}.bin", connection="AzureWebJobsStorage")
def on_archive(client: blob_sdk.BlobClient) -> None:
    """An SDK-type (deferred) binding: the host hands over a BlobClient; the function reads a range."""
    properties = client.get_blob_properties()
    head = client.download_blob(offset=0, length=4).readall()
    earlier = _record(
        function="on_archive",
        key=f"{client.blob_name}@{properties.etag}",
        type=f"{type(client).__module__}.{type(client).__name__}",
        container=client.container_name,
        name=client.blob_name,
        size=properties.size,
        head=head.decode(),
    )
    if head == b"fail" and earlier < 2:
        raise RuntimeError(f"refusing {client.blob_name} (attempt {earlier + 1})")


@app.function_name("on_tick")
@app.timer_trigger(arg_name="timer", schedule="%SAMPLE_SCHEDULE%", run_on_startup=False)
def on_tick(timer: func.TimerRequest) -> None:
    _record(function="on_tick", key="tick", past_due=timer.past_due, last=timer.schedule_status.get("Last"))
    sample = logging.getLogger("sample")
    sample.info("ticked", extra={"sample.key": "value"})
    sample.debug("below INFO: not forwarded")
    other = threading.Thread(target=lambda: sample.info("from a thread the handler started"))
    other.start()
    other.join()


@app.function_name("echo")
@app.route(route="items/{id:int}/{detail?}", methods=["GET", "POST"])
def echo(req: func.HttpRequest) -> func.HttpResponse:
    payload = {
        "method": req.method,
        "route_params": dict(req.route_params),
        "params": dict(req.params),
        "body": req.get_body().decode(),
        "header": req.headers.get("x-sample"),
    }
    return func.HttpResponse(
        json.dumps(payload),
        status_code=201 if req.method == "POST" else 200,
        mimetype="application/json",
        headers={"x-echo": "yes"},
    )


@app.function_name("boom")
@app.route(route="boom", methods=["GET"])
def boom(req: func.HttpRequest) -> func.HttpResponse:
    raise ValueError("boom")
