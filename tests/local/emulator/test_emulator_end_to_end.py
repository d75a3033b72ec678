"""The issue's 'Done when': only the official SDKs, upload -> fine-tune -> deploy (ARM) -> better answers.

Digits (scikit-learn's 8x8 handwritten digits as JPEGs), 1,500 for training and 297 held out.
"""

from __future__ import annotations

import pytest

from local.emulator.clients import management_client, openai_client, v1_client
from local.emulator.constants import BASE_DEPLOYMENT, BASE_MODEL
from tests.fixtures.emulator import (
    deploy_model,
    digit_label,
    digit_messages,
    digit_split,
    digits_examples,
    to_jsonl,
    wait_until,
)

pytestmark = [pytest.mark.emulator, pytest.mark.slow]


def test_fine_tuned_model_clearly_beats_the_base_model(emulator_factory):
    server = emulator_factory()
    client = openai_client(server.url)
    train, held_out = digit_split()
    uploaded = client.files.create(file=("digits-train.jsonl", to_jsonl(digits_examples(train))), purpose="fine-tune")
    wait_until(lambda: client.files.retrieve(uploaded.id).status == "processed", timeout=60)
    tuning = v1_client(server.url)  # trainingType: documented on the v1 API, not on 2024-10-21
    job = tuning.fine_tuning.jobs.create(
        model=BASE_MODEL,
        training_file=uploaded.id,
        suffix="digits",
        seed=42,
        extra_body={"trainingType": "globalstandard"},
    )
    job = wait_until(
        lambda: (j := tuning.fine_tuning.jobs.retrieve(job.id)).status in ("succeeded", "failed") and j, timeout=120
    )
    assert job.status == "succeeded", job.error

    mgmt = management_client(server.url)
    deployment = deploy_model(mgmt, "digits-candidate", job.fine_tuned_model, capacity=10)
    assert deployment.properties.provisioning_state == "Succeeded"

    def accuracy(deployment_name: str) -> float:
        correct = 0
        for index in held_out:
            answer = client.chat.completions.create(
                model=deployment_name, messages=digit_messages(index), temperature=0
            ).choices[0].message.content
            correct += answer == digit_label(index)
        return correct / len(held_out)

    fine_tuned, base = accuracy("digits-candidate"), accuracy(BASE_DEPLOYMENT)
    print(f"held-out accuracy: fine-tuned {fine_tuned:.3f}, base {base:.3f}")
    assert fine_tuned > 0.85
    assert fine_tuned - base > 0.15
    assert base > 0.2  # weaker, but not random: it saw a few examples per label of the training file
