"""Chat completions on deployments: usage, temperature, the base model's behaviour, errors."""

from __future__ import annotations

import openai
import pytest

from local.emulator.clients import openai_client
from local.emulator.constants import BASE_DEPLOYMENT, BASE_MODEL, BATCH_DEPLOYMENT
from tests.fixtures.emulator import DIGIT_LABELS, deploy_model, digit_messages, digit_split

pytestmark = pytest.mark.emulator


def test_usage_counts_85_tokens_per_low_detail_image(emulator):
    client = openai_client(emulator.url)
    text_only = [digit_messages(0)[0], {"role": "user", "content": [{"type": "text", "text": "Which category is this image?"}]}]
    without_image = client.chat.completions.create(model=BASE_DEPLOYMENT, messages=text_only, temperature=0)
    with_image = client.chat.completions.create(model=BASE_DEPLOYMENT, messages=digit_messages(0), temperature=0)
    assert with_image.usage.prompt_tokens - without_image.usage.prompt_tokens == 85
    assert with_image.usage.total_tokens == with_image.usage.prompt_tokens + with_image.usage.completion_tokens
    assert with_image.model == BASE_MODEL and with_image.object == "chat.completion"
    assert with_image.choices[0].finish_reason == "stop"


def test_base_model_is_deterministic_at_temperature_zero_and_sometimes_off_label(emulator):
    client = openai_client(emulator.url)
    held_out = digit_split()[1][:120]
    first = [
        client.chat.completions.create(model=BASE_DEPLOYMENT, messages=digit_messages(i), temperature=0)
        .choices[0].message.content
        for i in held_out
    ]
    again = [
        client.chat.completions.create(model=BASE_DEPLOYMENT, messages=digit_messages(i), temperature=0)
        .choices[0].message.content
        for i in held_out[:20]
    ]
    assert again == first[:20]
    off_label = [answer for answer in first if answer not in DIGIT_LABELS]
    assert 1 <= len(off_label) <= 25  # ~7%, deterministic per image


def test_base_model_uses_the_prompts_labels(emulator):
    client = openai_client(emulator.url)
    prompt = "Sort the picture.\nCategories:\n- cat\n- dog\n- bird\nAnswer with one category."
    messages = [{"role": "system", "content": prompt}, digit_messages(7)[1]]
    answers = {
        client.chat.completions.create(model=BASE_DEPLOYMENT, messages=messages, temperature=1.5, seed=s)
        .choices[0].message.content
        for s in range(12)
    }
    assert answers & {"cat", "dog", "bird"}
    assert not answers & set(DIGIT_LABELS)


def test_temperature_changes_fine_tuned_answers(emulator, small_fine_tuned_job):
    from local.emulator.clients import management_client
    from local.emulator.constants import ACCOUNT, RESOURCE_GROUP

    mgmt = management_client(emulator.url)
    deploy_model(mgmt, "temperature-test", small_fine_tuned_job.fine_tuned_model)
    client = openai_client(emulator.url)
    index = digit_split()[1][0]
    cold = {
        client.chat.completions.create(model="temperature-test", messages=digit_messages(index), temperature=0)
        .choices[0].message.content
        for _ in range(5)
    }
    hot = {
        client.chat.completions.create(model="temperature-test", messages=digit_messages(index), temperature=2, seed=s)
        .choices[0].message.content
        for s in range(25)
    }
    assert len(cold) == 1 and len(hot) > 1
    mgmt.deployments.begin_delete(RESOURCE_GROUP, ACCOUNT, "temperature-test").result()


def test_chat_errors(emulator):
    client = openai_client(emulator.url, max_retries=0)
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="nope", messages=digit_messages(0))
    assert missing.value.body["code"] == "DeploymentNotFound"
    with pytest.raises(openai.BadRequestError) as batch_only:
        client.chat.completions.create(model=BATCH_DEPLOYMENT, messages=digit_messages(0))
    assert "Batch API" in batch_only.value.body["message"]
    broken = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,@@"}}]}]
    with pytest.raises(openai.BadRequestError) as bad_image:
        client.chat.completions.create(model=BASE_DEPLOYMENT, messages=broken)
    assert "base64" in bad_image.value.body["message"]
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=BASE_DEPLOYMENT, messages=digit_messages(0), temperature=3)


def test_v1_route(emulator):
    import httpx

    from local.emulator.constants import API_KEY

    response = httpx.post(
        f"{emulator.url}/openai/v1/chat/completions",
        headers={"api-key": API_KEY},
        json={"model": BASE_DEPLOYMENT, "messages": digit_messages(3), "temperature": 0},
    )
    assert response.status_code == 200 and response.json()["choices"][0]["message"]["content"]


def test_logprobs_only_when_asked_and_refused_as_the_spec_refuses_them(emulator):
    import math

    client = openai_client(emulator.url)
    plain = client.chat.completions.create(model=BASE_DEPLOYMENT, messages=digit_messages(3), temperature=0)
    assert plain.choices[0].logprobs is None
    asked = client.chat.completions.create(
        model=BASE_DEPLOYMENT, messages=digit_messages(3), temperature=0, logprobs=True, top_logprobs=3
    )
    choice = asked.choices[0]
    [token] = choice.logprobs.content
    assert token.token == choice.message.content and token.logprob <= 0
    assert bytes(token.bytes).decode("utf-8") == token.token
    assert len(token.top_logprobs) == 3
    assert [t.logprob for t in token.top_logprobs] == sorted((t.logprob for t in token.top_logprobs), reverse=True)
    assert sum(math.exp(t.logprob) for t in token.top_logprobs) <= 1.0 + 1e-9
    for bad, param in (
        (dict(top_logprobs=2), "top_logprobs"),  # needs logprobs: true
        (dict(logprobs=True, top_logprobs=21), "top_logprobs"),
        (dict(logprobs="yes"), "logprobs"),
    ):
        with pytest.raises(openai.BadRequestError) as error:
            client.chat.completions.create(model=BASE_DEPLOYMENT, messages=digit_messages(3), temperature=0, **bad)
        assert error.value.body.get("param") == param


def test_fine_tuned_logprobs_are_the_models_probability_of_its_answer(emulator, small_fine_tuned_job):
    import math

    from local.emulator.clients import management_client

    deploy_model(management_client(emulator.url), "logprobs-test", small_fine_tuned_job.fine_tuned_model)
    client = openai_client(emulator.url)
    probabilities = []
    for index in digit_split()[1][:10]:
        choice = client.chat.completions.create(
            model="logprobs-test", messages=digit_messages(index), temperature=0, logprobs=True, top_logprobs=2
        ).choices[0]
        [token] = choice.logprobs.content
        # temperature 0 answers the most likely label: the top alternative is the answer itself
        assert token.top_logprobs[0].token == choice.message.content == token.token
        probabilities.append(math.exp(token.logprob))
    assert all(0 < p <= 1 for p in probabilities)
