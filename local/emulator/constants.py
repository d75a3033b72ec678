"""Fixed names of the emulated Azure OpenAI resource. Other modules and tests import these."""

from __future__ import annotations

API_KEY = "visiontune-local-key"
SUBSCRIPTION_ID = "00000000-0000-0000-0000-000000000000"
RESOURCE_GROUP = "visiontune-local"
ACCOUNT = "visiontune-local"
LOCATION = "local"
BASE_MODEL = "gpt-4.1-2025-04-14"
BASE_DEPLOYMENT = "base"  # created at start: GlobalStandard deployment of BASE_MODEL
BATCH_DEPLOYMENT = "base-batch"  # created at start: GlobalBatch deployment of BASE_MODEL

# Base models the emulated resource can fine-tune and deploy (the vision fine-tuning models).
BASE_MODELS = ("gpt-4.1-2025-04-14", "gpt-4o-2024-08-06")
DATA_PLANE_API_VERSION = "2024-10-21"
ARM_API_VERSION = "2024-10-01"
