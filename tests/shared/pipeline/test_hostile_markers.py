"""Hostile and careless ``_READY`` markers (issue 13, item 2): every marker ends in a run or an intake
report, never in an exception the trigger would retry into the poison queue."""

from __future__ import annotations

import pytest

from shared.pipeline.overrides import OverridesError, RunOverrides

POWERSHELL_EMPTY = "\ufeff{}\r\n".encode("utf-16-le")  # `echo {} > _READY` in Windows PowerShell 5


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (POWERSHELL_EMPTY, {}),
        ('{"n_epochs": 3}\r\n'.encode("utf-16"), {"n_epochs": 3}),  # UTF-16 with BOM, native order
        ("\ufeff{\"n_epochs\": 3}".encode("utf-16-be"), {"n_epochs": 3}),
        (b'\xef\xbb\xbf{"n_epochs": 2}', {"n_epochs": 2}),  # UTF-8 with BOM (Notepad)
        ('{"prompt": "Which café? {categories}"}'.encode(), {"prompt": "Which café? {categories}"}),
        (b'{"seed": 0, "batch_size": 256, "max_run_usd": 0}', {"seed": 0, "batch_size": 256, "max_run_usd": 0.0}),
        (b'{"seed": 2147483647}', {"seed": 2147483647}),
    ],
)
def test_utf8_and_utf16_markers_are_read(body, expected):
    assert RunOverrides.parse_marker(body).values() == expected


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('{"prompt": "café"}'.encode("latin-1"), "neither UTF-8 nor UTF-16"),
        (b"[" * 50_000, "nested too deeply"),
        (b'{"a":' * 5_000 + b"1" + b"}" * 5_000, "nested too deeply"),
        (b'{"max_run_usd": 1e309}', "not finite"),
        (b'{"learning_rate_multiplier": 1e309}', "not finite"),
        (b'{"learning_rate_multiplier": NaN}', "NaN"),
        (b'{"max_run_usd": -Infinity}', "-Infinity"),
        (b'{"max_run_usd": "inf"}', "max_run_usd: Input should be a finite number"),
        (b'{"seed": -1}', "seed: Input should be greater than or equal to 0"),
        (b'{"seed": 2147483648}', "seed: Input should be less than or equal to 2147483647"),
        (b'{"batch_size": 0}', "batch_size"),
        (b'{"batch_size": 257}', "batch_size: Input should be less than or equal to 256"),
        (b'{"n_epochs": 51}', "n_epochs"),
        (b'{"n_epochs": true}', "n_epochs: Input should be a valid integer"),
        (b'{"learning_rate_multiplier": 0}', "learning_rate_multiplier"),
        (b'{"max_run_usd": -1}', "max_run_usd"),
        (b'{"seed": 1' + b"0" * 5_000 + b"}", "not valid JSON"),
        (b'{"base_model": ""}', "base_model"),
        (b" " * 70_000, "at most"),
    ],
)
def test_unusable_markers_raise_only_overrides_error(body, message):
    with pytest.raises(OverridesError) as caught:
        RunOverrides.parse_marker(body)
    assert message in str(caught.value)


def test_a_powershell_marker_starts_a_run(pipeline_env, digits_dir):
    env = pipeline_env
    result = env.drop(digits_dir, "digits", POWERSHELL_EMPTY)
    assert result is not None and result.run_created
    result = env.drop(digits_dir, "digits", '{"n_epochs": 3}'.encode("utf-16"))
    assert result is not None and env.run("digits", result.version).overrides == {"n_epochs": 3}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('{"prompt": "café"}'.encode("latin-1"), "neither UTF-8 nor UTF-16"),
        (b"[" * 50_000, "nested too deeply"),
        (b'{"max_run_usd": 1e309}', "not finite"),
        (b'{"seed": 4294967296}', "seed"),
    ],
)
def test_an_unusable_marker_leaves_an_intake_report_and_no_run(pipeline_env, digits_dir, body, message):
    env = pipeline_env
    assert env.drop(digits_dir, "digits", body) is None
    assert env.store().list("digits") == []
    failure = env.report("digits", "intake")["failure"]
    assert failure["stage"] == "marker" and message in failure["message"]


def test_an_unknown_base_model_is_refused_before_converting_or_uploading(pipeline_env, digits_dir):
    env = pipeline_env
    assert env.drop(digits_dir, "digits", {"base_model": "gpt-4.1-typo"}) is None
    assert env.store().list("digits") == []
    assert env.admin.stats().count("models_list") >= 1
    assert env.admin.stats().count("files_create") == 0 and env.files() == []
    failure = env.report("digits", "intake")["failure"]
    assert failure["stage"] == "marker"
    assert "'gpt-4.1-typo' is not a model of this Azure OpenAI resource" in failure["message"]
    assert "gpt-4.1-2025-04-14" in failure["message"]  # names the models that can be fine-tuned
    # A model the resource has is accepted.
    result = env.drop(digits_dir, "digits", {"base_model": "gpt-4o-2024-08-06"})
    assert result is not None and result.run_created
