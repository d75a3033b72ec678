"""The emulator's HTTP routes, one module per resource; ``local.emulator.app`` mounts them.

Each module's ``router(emulator)`` returns a FastAPI ``APIRouter`` whose routes carry stable names
(``files_create``, ``chat_completions``, ...): the admin API injects faults and counts requests by them.
"""
