"""Manual approval end to end on the local stack: three digits datasets pushed with ``promotion: manual``
pass the gate and wait in awaiting_approval with their deployments kept; one is approved with
``visiontune approve``, one rejected through ``POST /api/reject`` (the local host's HTTP server), and one
is left alone until its (tiny) approval timeout rejects it. Rejected candidates' deployments are deleted."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path

from cli.main import main
from tests.fixtures.local_stack import PIPELINE_SETTINGS, host_less_stack
from tests.fixtures.pipeline import DIGITS_PER_LABEL, FAST_CLOCK

# A day is 86,400 s: 0.0003 days is about 26 s, long enough to approve the other two first.
TIMEOUT_DAYS = 0.0003


def _post(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_approve_reject_and_timeout(tmp_path: Path, capsys) -> None:
    from local.host.http_server import start_http_server
    from local.sample_data import export_digits
    from shared.pipeline.store import RunStore
    from shared.settings import Settings

    digits = export_digits(tmp_path / "digits", size=32, limit_per_label=DIGITS_PER_LABEL)
    settings_file = tmp_path / "local.settings.json"
    with host_less_stack(
        tmp_path / "stack", emulator=FAST_CLOCK, settings={**PIPELINE_SETTINGS, "VISIONTUNE_PROMOTION": "manual"},
        settings_file=settings_file,
    ) as stack:
        settings = Settings.model_validate(stack.settings)
        store = RunStore.from_settings(settings)
        for name in ("approved", "rejected"):
            assert main(["push", str(digits), "--dataset", name, "--settings", str(settings_file)]) == 0
        assert main(["push", str(digits), "--dataset", "timeout", "--settings", str(settings_file),
                     "--set", f"approval_timeout_days={TIMEOUT_DAYS}"]) == 0
        stack.host.run_until_idle(timeout=180)

        def runs() -> dict[str, object]:
            return {name: store.list(name)[0] for name in ("approved", "rejected", "timeout")}

        deadline = time.monotonic() + 240
        while not all(r.state.value == "awaiting_approval" for r in runs().values()):
            assert time.monotonic() < deadline, {n: (r.state.value, r.transitions[-1].detail) for n, r in runs().items()}
            assert stack.host.tick("advance_runs").succeeded
            time.sleep(0.1)
        waiting = runs()
        for name, run in waiting.items():
            assert run.candidate is not None and run.candidate.deleted_at is None, name
            assert "kept: $1.70/hour" in run.transitions[-1].detail, run.transitions[-1].detail
        for _ in range(3):  # waiting is stable: ticks change nothing
            assert stack.host.tick("advance_runs").succeeded
        assert {n: r.state.value for n, r in runs().items() if n != "timeout"} == {
            "approved": "awaiting_approval", "rejected": "awaiting_approval"}

        capsys.readouterr()
        version = waiting["approved"].version
        assert main(["approve", "approved", version[:8], "--by", "alice", "--settings", str(settings_file)]) == 0
        assert f"approved/{version}: promoted" in capsys.readouterr().out
        production = json.loads(stack.host.tick("status").response.get_body())
        by_name = {d["dataset"]: d for d in production["datasets"]}
        assert by_name["approved"]["production"]["version"] == version
        assert by_name["rejected"]["production"] is None

        # a second decision on the same run is refused
        assert main(["reject", "approved", version, "--reason", "late", "--settings", str(settings_file)]) == 2
        assert "is promoted" in capsys.readouterr().err

        server = start_http_server(stack.host, 0)
        try:
            url = f"http://127.0.0.1:{server.server_address[1]}/api"
            status, body = _post(f"{url}/reject/rejected/{waiting['rejected'].version}", {})
            assert status == 400 and "reason" in body["error"]
            status, body = _post(f"{url}/reject/rejected/{waiting['rejected'].version}",
                                 {"reason": "labels of 7 look off", "by": "bob"})
            assert status == 200 and body["state"] == "rejected", body
            assert "rejected by bob: labels of 7 look off" in body["detail"]
            status, body = _post(f"{url}/approve/rejected/{waiting['rejected'].version}", {})
            assert status == 409
        finally:
            server.shutdown()

        deadline = time.monotonic() + 120
        while True:
            current = runs()
            if all(r.terminal and r.report_written_for == r.state.value for r in current.values()):
                break
            assert time.monotonic() < deadline, {n: (r.state.value, r.transitions[-1].detail) for n, r in current.items()}
            assert stack.host.tick("advance_runs").succeeded
            time.sleep(0.5)
        assert current["timeout"].state.value == "rejected"
        assert any(f"no approval within {TIMEOUT_DAYS:g} days" in t.detail for t in current["timeout"].transitions)
        for name in ("rejected", "timeout"):
            assert current[name].candidate.deleted_at is not None, f"{name}: its deployment was not deleted"
        assert current["approved"].candidate.deleted_at is None

        capsys.readouterr()
        assert main(["events", "--settings", str(settings_file), "--json"]) == 0
        events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        waiting_events = [e for e in events if e["type"] == "visiontune.run.awaiting_approval"]
        assert len(waiting_events) == 3 and all(e["data"]["hourly_cost_usd"] == 1.7 for e in waiting_events)
        assert {e["data"]["dataset"] for e in events if e["type"] == "visiontune.run.rejected"} == {"rejected", "timeout"}
        assert {e["data"]["dataset"] for e in events if e["type"] == "visiontune.run.promoted"} == {"approved"}
