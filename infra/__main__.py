"""Pulumi entry point (``Pulumi.yaml``: ``main: infra/``).

Pulumi runs this directory with ``infra/`` itself as the working directory and on ``sys.path``, not the
repository root, so ``import infra...`` / ``import shared...`` would fail there: put the root on the path
first. (Our module names do not clash with installed packages, so ``infra/`` staying on the path is harmless.)
"""

import sys
from pathlib import Path

REPO_ROOT = str(Path(__file__).resolve().parent.parent)
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

import pulumi  # noqa: E402

from infra.component import VisionTune  # noqa: E402
from infra.config import load_config  # noqa: E402

visiontune = VisionTune("visiontune", load_config())
for output_name, value in visiontune.outputs.items():
    pulumi.export(output_name, value)
