"""`make conformance` (schemathesis against the official specs of every API version the pipeline uses)
passes on the emulator."""

from __future__ import annotations

import pytest

from local import conformance

pytestmark = [pytest.mark.emulator, pytest.mark.slow]


@pytest.mark.skipif(conformance.SPECS_DIR is None, reason="the spec copies (shared/specs beside the checkout) are missing")
def test_schemathesis_passes_against_the_emulator(capfd):
    exit_code = conformance.run(max_examples=8, seed=1)
    output = capfd.readouterr().out
    assert exit_code == 0, output[-4000:]
    assert "conformance: 2024-10-21: exit 0, v1: exit 0" in output
    assert "Tested: 15" in output and "Tested: 6" in output  # every operation the pipeline calls, per version
