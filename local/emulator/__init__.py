"""The Azure OpenAI emulator: data plane (files, fine-tuning, batches, chat), ARM deployments, faults.

Start one with ``EmulatorServer(data_dir, config=EmulatorConfig(...)).start()`` (``local.emulator.server``);
talk to it with the official SDKs (``local.emulator.clients``) and steer it with ``EmulatorAdmin``.
"""

from local.emulator.config import EmulatorConfig
from local.emulator.server import EmulatorServer, local_settings_values

__all__ = ["EmulatorConfig", "EmulatorServer", "local_settings_values"]
