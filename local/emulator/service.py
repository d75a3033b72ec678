"""The emulated Azure OpenAI resource: files, fine-tuning jobs, batches, deployments and chat answers.

Pure logic behind the HTTP layer (``app.py`` and ``routes/``), one module per resource, put together
here: ``core`` (state, clock, workers), ``files`` (files and uploads), ``fine_tuning`` (jobs),
``training`` (the training worker, checkpoints, events), ``batches``, ``models``, ``deployments`` (ARM)
and ``chat`` (answers).
"""

from __future__ import annotations

from local.emulator.batches import BatchesMixin
from local.emulator.chat import ChatMixin
from local.emulator.deployments import DeploymentsMixin
from local.emulator.files import FilesMixin
from local.emulator.fine_tuning import FineTuningMixin
from local.emulator.models import ModelsMixin
from local.emulator.training import TrainingMixin


class Emulator(FilesMixin, FineTuningMixin, TrainingMixin, BatchesMixin, DeploymentsMixin, ChatMixin, ModelsMixin):
    """One emulated Azure OpenAI resource rooted at ``data_dir`` (``Emulator(data_dir, config)``)."""
