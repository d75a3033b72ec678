"""The local functions host on the sample app against a real Azurite: starting and stopping, settings, ticks, the trigger pool."""

from __future__ import annotations

import json
import os
import shutil
import sys
import time

import pytest

from local.host.host import LocalFunctionsHost
from local.host.indexing import IndexingError
from tests.local.host.sample_host import SAMPLE_APP, read_calls, upload


def test_background_watcher_and_timer_fire_while_running(
    make_host, blob_service, fresh_container, calls_file
):
    host = make_host(settings={"SAMPLE_SCHEDULE": "* * * * * *"}, poll_interval=0.2)
    host.start()
    upload(blob_service, fresh_container, "in/live.txt", b"live")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (
        not read_calls(calls_file) or len(read_calls(calls_file, "on_tick")) < 2
    ):
        time.sleep(0.1)
    assert [c["body"] for c in read_calls(calls_file)] == ["live"]
    ticks = read_calls(calls_file, "on_tick")
    assert len(ticks) >= 2 and not any(t["past_due"] for t in ticks)
    host.stop()
    assert {i.function_name for i in host.history} == {"on_text", "on_tick"}


def test_tick_runs_a_timer_now_and_a_blob_function_on_a_given_blob(
    make_host, blob_service, fresh_container, calls_file
):
    host = make_host()
    invocation = host.tick("on_tick")
    assert (invocation.outcome, invocation.trigger_type, invocation.schedule) == (
        "succeeded",
        "timerTrigger",
        "0 0 3 * * *",
    )
    (tick,) = read_calls(calls_file, "on_tick")
    assert tick["past_due"] is False
    upload(blob_service, fresh_container, "in/x.txt", b"x")
    assert host.tick("on_text", blob_path=f"{fresh_container}/in/x.txt").succeeded
    with pytest.raises(ValueError, match="does not match"):
        host.tick("on_text", blob_path=f"{fresh_container}/in/x.png")
    with pytest.raises(KeyError, match="on_tick"):
        host.tick("nope")


def test_bounded_concurrency(make_host, blob_service, fresh_container):
    host = make_host(settings={"SAMPLE_DELAY": "0.2"}, max_workers=2)
    module = sys.modules[host.function("on_text").handler.__module__]
    module.most_active = 0
    for index in range(6):
        upload(blob_service, fresh_container, f"in/{index}.txt", b"x")
    assert len(host.run_once()) == 6
    assert module.most_active == 2


def test_settings_resolution_local_settings_file_and_environment_restore(
    make_host, tmp_path, fresh_container
):
    app_root = tmp_path / "app"
    shutil.copytree(SAMPLE_APP, app_root)
    (app_root / "local.settings.json").write_text(
        json.dumps(
            {
                "IsEncrypted": False,
                "Values": {
                    "SAMPLE_SCHEDULE": "0 */5 * * * *",
                    "SAMPLE_FROM_FILE": "file",
                    "SAMPLE_CONTAINER": "from-file",
                },
            }
        )
    )
    assert "SAMPLE_FROM_FILE" not in os.environ
    host = make_host(
        app_root, settings={"SAMPLE_SCHEDULE": None}
    )  # explicit SAMPLE_CONTAINER wins over the file
    info = {f.name: f for f in host.functions()}
    assert info["on_text"].path == f"{fresh_container}/in/{{name}}.txt"
    assert info["on_tick"].schedule == "0 */5 * * * *"
    assert (info["echo"].route, info["echo"].methods) == ("items/{id:int}/{detail?}", ("GET", "POST"))
    assert [o["type"] for o in info["on_text"].outputs] == ["blob"]
    assert os.environ["SAMPLE_FROM_FILE"] == "file"
    host.stop()
    assert "SAMPLE_FROM_FILE" not in os.environ and "SAMPLE_CONTAINER" not in os.environ


def test_missing_setting_reference_is_named(tmp_path, azurite):
    with pytest.raises(IndexingError, match="%SAMPLE_CONTAINER%"):
        LocalFunctionsHost(
            SAMPLE_APP,
            settings={"AzureWebJobsStorage": azurite.connection_string, "SAMPLE_SCHEDULE": "0 0 3 * * *"},
        )
