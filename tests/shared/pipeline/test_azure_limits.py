"""Azure OpenAI's documented limits, end to end on the local stack (Azurite + the emulator enforcing
them): batch input files, the fine-tuning file quota, fine-tuned deployment slots, and ARM's one
deployment operation per account at a time."""

from __future__ import annotations

import math

import pytest

pytestmark = pytest.mark.emulator


@pytest.mark.emulator_config(max_batch_requests=8)
def test_a_test_set_over_the_batch_file_limits_is_sent_as_several_files_and_joined_back(pipeline_env, digits_dir):
    settings = pipeline_env.with_settings(batch_file_max_requests=8)
    run = pipeline_env.through(digits_dir, "digits", settings=settings)
    assert run.state.value in ("promoted", "rejected"), pipeline_env.timeline(run)
    base = run.evaluation["base"]
    tests = run.splits["test"]["examples"]
    assert base.method == "batch" and tests > 8
    assert len(base.batch_parts) == math.ceil(tests / 8)
    assert [(p.start, p.stop) for p in base.batch_parts][0] == (0, 8)
    assert all(p.status == "completed" for p in base.batch_parts), base.batch_parts
    assert base.batch_status == "completed" and base.scored == base.total == tests
    assert f"sent as {len(base.batch_parts)} batch files, joined back by custom_id" in base.note
    stats = pipeline_env.admin.stats()
    assert stats.count("batches_create") == len(base.batch_parts)
    assert stats.count("chat_completions") == tests  # the candidate only: no base request fell back to real time
    report = pipeline_env.report("digits", run.version)
    assert "joined back by custom_id" in str(report)


def test_the_emulator_refuses_a_batch_file_over_the_limits(emulator_factory):
    import io
    import json

    from local.emulator.clients import openai_client
    from local.emulator.constants import BATCH_DEPLOYMENT
    from tests.fixtures.emulator import wait_until

    server = emulator_factory(max_batch_requests=3, max_batch_file_bytes=2000)
    client = openai_client(server.url)

    def lines(count: int, pad: int = 0) -> bytes:
        return b"".join(
            json.dumps({"custom_id": f"r{i}", "method": "POST", "url": "/chat/completions",
                        "body": {"model": BATCH_DEPLOYMENT, "messages": [{"role": "user", "content": "x" * pad}]}}
                       ).encode() + b"\n"
            for i in range(count)
        )  # fmt: skip

    import openai

    with pytest.raises(openai.BadRequestError, match="limit for purpose 'batch' is 2000 bytes"):
        client.files.create(file=("big.jsonl", io.BytesIO(lines(1, pad=3000))), purpose="batch")
    uploaded = client.files.create(file=("many.jsonl", io.BytesIO(lines(4))), purpose="batch")
    wait_until(lambda: client.files.retrieve(uploaded.id).status == "processed")
    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/chat/completions", completion_window="24h")
    failed = wait_until(lambda: (b := client.batches.retrieve(batch.id)).status == "failed" and b)
    assert "at most 3" in failed.errors.data[0].message
