"""The local Azure Functions host: runs ``function_app.py`` against Azurite (blob triggers, timers, HTTP).

``LocalFunctionsHost`` is the entry point; see ``local.host.host`` for the behaviour and its caveats.
"""

from local.host.host import Invocation, LocalFunctionsHost
from local.host.indexing import FunctionInfo, IndexingError
from local.host.ncrontab import Schedule, ScheduleError, parse_schedule

__all__ = [
    "FunctionInfo",
    "IndexingError",
    "Invocation",
    "LocalFunctionsHost",
    "Schedule",
    "ScheduleError",
    "parse_schedule",
]
