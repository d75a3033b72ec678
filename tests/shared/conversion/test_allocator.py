"""keep_freed_memory: glibc takes the thresholds once per process; elsewhere it does nothing."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_keep_freed_memory_sets_the_thresholds_once_per_process():
    code = (
        "from shared.conversion import allocator\n"
        "calls = []\n"
        "first = allocator.keep_freed_memory()\n"
        "allocator.ctypes.CDLL = lambda *a, **k: calls.append(a)\n"  # a second call must not load libc again
        "print(first, allocator.keep_freed_memory(), calls)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "True", "[]"]


def test_keep_freed_memory_does_nothing_off_linux(monkeypatch):
    from shared.conversion import allocator

    monkeypatch.setattr(allocator, "_done", False)
    monkeypatch.setattr(allocator.sys, "platform", "darwin")
    assert allocator.keep_freed_memory() is False
