"""A queue-triggered sample app for the local host tests: ``on_message`` records each call; a body
``{"fail": N}`` fails the first N calls of that message, ``{"fail": "always"}`` every call; ``fan_out``
(HTTP) sends its body's items to the queue through an output binding."""

import json
import os
import threading
import time

import azure.functions as func

app = func.FunctionApp()
_lock = threading.Lock()


@app.function_name("on_message")
@app.queue_trigger(arg_name="msg", queue_name="%SAMPLE_QUEUE%", connection="AzureWebJobsStorage")
def on_message(msg: func.QueueMessage) -> None:
    body = json.loads(msg.get_body())
    started = time.monotonic()
    time.sleep(float(body.get("sleep", 0)))
    with _lock, open(os.environ["SAMPLE_CALLS_FILE"], "a") as calls:
        calls.write(
            json.dumps(
                {"id": msg.id, "body": body, "dequeue_count": msg.dequeue_count, "started": started}
            )
            + "\n"
        )
    fail = body.get("fail", 0)
    if fail == "always" or msg.dequeue_count <= int(fail or 0):
        raise RuntimeError(f"failing {body} on dequeue {msg.dequeue_count}")


@app.function_name("fan_out")
@app.route(route="fan_out", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@app.queue_output(arg_name="out", queue_name="%SAMPLE_QUEUE%", connection="AzureWebJobsStorage")
def fan_out(req: func.HttpRequest, out: func.Out[list[str]]) -> func.HttpResponse:
    out.set([json.dumps(item) for item in req.get_json()])
    return func.HttpResponse("sent")
