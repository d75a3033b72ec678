"""``RunOverrides``: one name per knob. A ``_READY`` marker key is the name of the setting it overrides;
the old names (``epochs``, ``budget_usd``) are still read, as the new ones, with a warning."""

from __future__ import annotations

import logging

import pytest

from shared.pipeline.models import Run, RunState
from shared.pipeline.overrides import RENAMED_OVERRIDES, OverridesError, RunOverrides
from shared.settings import Settings


def test_every_override_key_is_the_name_of_a_setting():
    keys = set(RunOverrides.model_fields) - {"prompt"}  # the prompt is not a setting
    assert keys <= set(Settings.model_fields), keys - set(Settings.model_fields)
    assert set(RENAMED_OVERRIDES.values()) <= keys


def test_each_key_overrides_the_setting_of_its_name():
    values = {"n_epochs": 4, "max_run_usd": 12.5, "seed": 9, "max_side": 64, "continue_from_production": True}
    applied = RunOverrides.model_validate(values).apply(Settings())
    assert {key: getattr(applied, key) for key in values} == values


def test_old_names_are_read_as_the_new_ones_with_a_warning():
    overrides = RunOverrides.parse_marker(b'{"epochs": 3, "budget_usd": 20, "seed": 1}')
    assert overrides.values() == {"n_epochs": 3, "max_run_usd": 20.0, "seed": 1}
    assert len(overrides.warnings) == 2
    assert '"epochs" is the old name of "n_epochs"' in overrides.warnings[0]
    assert '"budget_usd" is the old name of "max_run_usd"' in overrides.warnings[1]
    assert RunOverrides.parse_marker(b'{"n_epochs": 3}').warnings == []


def test_a_bad_value_under_an_old_name_is_reported_under_the_name_written():
    with pytest.raises(OverridesError, match="epochs: Input should be less than or equal to 50") as caught:
        RunOverrides.parse_marker(b'{"epochs": 51}')
    assert "n_epochs:" not in str(caught.value)


def test_both_names_of_one_knob_are_refused():
    with pytest.raises(
        OverridesError, match="budget_usd is the old name of max_run_usd: give only max_run_usd"
    ):
        RunOverrides.parse_marker(b'{"budget_usd": 5, "max_run_usd": 6}')


def test_a_run_stored_with_old_names_keeps_its_overrides():
    run = Run(dataset="digits", version="v1", overrides={"epochs": 3, "budget_usd": 7.5})
    settings = run.effective_settings(Settings())
    assert (settings.n_epochs, settings.max_run_usd) == (3, 7.5)


def test_push_writes_the_new_names_and_says_so():
    from cli.push import parse_overrides

    values, warnings = parse_overrides(["epochs=3", "prompt=Which digit?"])
    assert values == {"n_epochs": 3, "prompt": "Which digit?"}
    assert len(warnings) == 1 and '"epochs"' in warnings[0]
    assert parse_overrides(["n_epochs=3"]) == ({"n_epochs": 3}, [])


def test_a_marker_with_an_old_name_works_and_the_run_says_so(pipeline_env, digits_dir, caplog):
    """On the local stack: the old key still sets the budget; the warning is logged and on the run's
    timeline (so in its report)."""
    env = pipeline_env
    with caplog.at_level(logging.WARNING, logger="shared.pipeline.intake"):
        run = env.through(digits_dir, "digits", {"budget_usd": 0.01})
    assert run.state is RunState.OVER_BUDGET and run.overrides == {"max_run_usd": 0.01}
    assert "over the budget of $0.01" in run.failure.message
    assert any('"budget_usd" is the old name of "max_run_usd"' in t.detail for t in run.transitions)
    assert any('"budget_usd" is the old name' in record.getMessage() for record in caplog.records)
