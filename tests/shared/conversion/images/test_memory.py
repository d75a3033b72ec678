"""Memory per image (issue 13, item 4): big decoded images are shrunk band by band before their mode is
widened, and images that cannot be decoded within the budget are refused with a reason. The hostile files
are made here. (The bound on bytes read but not yet converted is tested with the converter.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.hostile_images import palette_png, rgba16_png
from shared.conversion.images import ImageSettings, image_memory_budget, normalise_image

REPO = Path(__file__).resolve().parents[4]
PER_WORKER_TARGET_MB = 300


# VmHWM of the child's own address space: ru_maxrss would carry over the (large) pytest parent's peak,
# which Linux keeps across fork and execve.
_PEAK_CHILD = """
import sys, json
from shared.conversion.images import normalise_image, ImageSettings
data = open(sys.argv[1], "rb").read()
result = normalise_image(data, ImageSettings())
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"ok": result.ok, "code": result.code, "size": [result.width, result.height],
                  "peak_mb": hwm / 1024}))
"""


def peak_of(path: Path) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", _PEAK_CHILD, str(path)], cwd=REPO, capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout)


@pytest.mark.parametrize(
    ("name", "make"),
    [("palette-9400.png", lambda: palette_png(9400)), ("rgba16-6000.png", lambda: rgba16_png(6000, 6000))],
)
def test_a_big_decoded_image_converts_within_the_per_worker_target(tmp_path, name, make):
    path = tmp_path / name
    path.write_bytes(make())
    assert path.stat().st_size < 2_000_000  # a small file ...
    measured = peak_of(path)
    assert measured["ok"] and max(measured["size"]) == 512
    assert measured["peak_mb"] < PER_WORKER_TARGET_MB, measured  # ... that took 451 / 443 MB before


def test_an_image_beyond_the_memory_budget_is_refused_with_a_reason():
    data = rgba16_png(9000, 9000)  # 324 MB once decoded as RGBA
    result = normalise_image(data, ImageSettings())
    assert not result.ok and result.code == "too_large_to_decode"
    assert "9000x9000 needs 31" in result.reason and "205 MB budget" in result.reason
    assert abs(image_memory_budget(4096) - 2 * image_memory_budget(2048)) <= 1
    assert normalise_image(data, ImageSettings(memory_budget=image_memory_budget(4096))).ok
