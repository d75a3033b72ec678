"""visiontune's domain logic: everything the functions, the CLI and the local stack decide lives here.

Imports nothing from ``functions/``, ``local/``, ``cli/`` or ``infra/``.
"""
