"""`make conformance` (schemathesis against the Azure OpenAI authoring spec) passes on the emulator."""

from __future__ import annotations

import pytest

from local import conformance

pytestmark = [pytest.mark.emulator, pytest.mark.slow]


@pytest.mark.skipif(not conformance.SPEC_PATH.exists(), reason=f"spec not found at {conformance.SPEC_PATH}")
def test_schemathesis_passes_against_the_emulator(capfd):
    exit_code = conformance.run(max_examples=8, seed=1)
    output = capfd.readouterr().out
    assert exit_code == 0, output[-4000:]
    assert "passed" in output and "Tested: 16" in output
