"""Load a Python v2 function app and read its functions' bindings, as the Functions worker indexes them.

Everything comes from ``app.get_functions()`` (the same ``function.json`` the worker sends to the host on
Azure), so the triggers are configured in one place: the decorators.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from local.host.ncrontab import parse_schedule

BLOB_TRIGGER = "blobTrigger"
TIMER_TRIGGER = "timerTrigger"
HTTP_TRIGGER = "httpTrigger"
QUEUE_TRIGGER = "queueTrigger"
SUPPORTED_TRIGGERS = (BLOB_TRIGGER, TIMER_TRIGGER, HTTP_TRIGGER, QUEUE_TRIGGER)
# Extra bindings the local host can satisfy besides the trigger.
SUPPORTED_BINDINGS = ("blob", "http", "queue")

_SETTING_RE = re.compile(r"%([^%]+)%")


class IndexingError(RuntimeError):
    """The function app could not be loaded or declares something the local host cannot run."""


def resolve_setting_references(text: str, settings: Mapping[str, str], *, what: str) -> str:
    """Replace every ``%NAME%`` in ``text`` by the app setting ``NAME`` (Azure's binding expressions).

    Raises ``IndexingError`` naming the missing setting and where it was used.
    """

    def replace(found: re.Match[str]) -> str:
        name = found.group(1)
        if name not in settings:
            raise IndexingError(f"{what} refers to the app setting %{name}%, which is not set")
        return settings[name]

    return _SETTING_RE.sub(replace, text)


@dataclass(frozen=True)
class FunctionInfo:
    """One indexed function: its trigger and bindings, with ``%SETTING%`` references resolved.

    ``trigger_type`` is ``blobTrigger``, ``timerTrigger`` or ``httpTrigger``; ``path`` (blob),
    ``schedule`` (timer) and ``route`` (http, relative to the route prefix) and ``queue_name`` (queue) are set for their type.
    ``outputs`` lists the output bindings (their ``function.json`` entries).
    """

    name: str
    trigger_type: str
    trigger_arg: str
    binding: dict[str, Any]
    handler: Callable[..., Any] = field(repr=False, compare=False)
    path: str | None = None
    connection: str | None = None
    source: str | None = None
    schedule: str | None = None
    run_on_startup: bool = False
    route: str | None = None
    methods: tuple[str, ...] = ()
    auth_level: str | None = None
    queue_name: str | None = None
    inputs: tuple[dict[str, Any], ...] = ()
    outputs: tuple[dict[str, Any], ...] = ()

    @property
    def deferred(self) -> bool:
        """The trigger binds an SDK type (``SupportsDeferredBinding``): the host hands the function a
        client for the blob instead of its content."""
        return bool((self.binding.get("properties") or {}).get("SupportsDeferredBinding"))

    @property
    def container(self) -> str | None:
        """The container a blob trigger watches (first segment of ``path``)."""
        return self.path.split("/", 1)[0] if self.path else None

    def describe(self) -> str:
        """One line: name, trigger and what it listens to."""
        detail = {
            BLOB_TRIGGER: self.path,
            TIMER_TRIGGER: self.schedule,
            HTTP_TRIGGER: self.route,
            QUEUE_TRIGGER: self.queue_name,
        }
        return f"{self.name}: {self.trigger_type} {detail.get(self.trigger_type)}"


def load_app_module(app_root: Path, module_name: str = "function_app") -> Any:
    """Import ``<app_root>/<module_name>.py`` with ``app_root`` first on ``sys.path``; returns the module.

    A module of that name already imported from the same file is reused; one from another file (two
    apps in one process, as in tests) is loaded under a distinct name so neither shadows the other.
    """
    app_root = Path(app_root).resolve()
    source = app_root / f"{module_name}.py"
    if not source.exists():
        raise IndexingError(f"no function app: {source} does not exist")
    if str(app_root) not in sys.path:
        sys.path.insert(0, str(app_root))
    existing = sys.modules.get(module_name)
    if existing is not None and Path(getattr(existing, "__file__", "") or "").resolve() == source:
        return existing
    unique_name = module_name if existing is None else f"{module_name}__{abs(hash(str(source))):x}"
    if unique_name in sys.modules:
        return sys.modules[unique_name]
    spec = importlib.util.spec_from_file_location(unique_name, source)
    if spec is None or spec.loader is None:
        raise IndexingError(f"cannot import {source}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[unique_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as error:
        del sys.modules[unique_name]
        raise IndexingError(f"importing {source} failed: {type(error).__name__}: {error}") from error
    return module


def find_function_app(module: Any) -> Any:
    """The ``FunctionApp`` instance defined at the module's top level (as the worker looks for it)."""
    import azure.functions as func

    apps = [value for value in vars(module).values() if isinstance(value, func.FunctionRegister)]
    if len(apps) != 1:
        raise IndexingError(f"{module.__file__} must define exactly one FunctionApp, found {len(apps)}")
    return apps[0]


def app_functions(app: Any) -> list[Any]:
    """``app.get_functions()``, callable any number of times.

    ``get_functions()`` remembers the names it returned and reports every name as a duplicate on a second
    call. The worker calls it once per process; here one imported app may be indexed by several hosts
    (restarts, tests) and by other code, so the name registry is cleared for the call and put back after.
    """
    saved = getattr(app, "functions_bindings", None)
    app.functions_bindings = None
    try:
        return list(app.get_functions())
    finally:
        app.functions_bindings = saved


def _binds_sdk_type(handler: Callable[..., Any], trigger: dict[str, Any]) -> bool:
    """The worker's rule for a deferred binding: an input whose annotation is an ``SdkType`` of a binding
    extension registered for that binding type (``azurefunctions.extensions.base``)."""
    try:
        from azurefunctions.extensions.base import meta
    except ImportError:  # no binding extension installed: nothing can be deferred
        return False
    annotation = typing.get_type_hints(handler).get(trigger["name"])
    return trigger["type"] in meta._ConverterMeta._bindings and meta._ConverterMeta.check_supported_type(
        annotation
    )


def index_functions(app: Any, settings: Mapping[str, str]) -> list[FunctionInfo]:
    """Read every function's bindings from ``app.get_functions()``; resolve ``%SETTING%`` references."""
    indexed: list[FunctionInfo] = []
    names: set[str] = set()
    for function in app_functions(app):
        name = function.get_function_name()
        if name in names:
            raise IndexingError(f"two functions are named {name!r}")
        names.add(name)
        bindings = json.loads(function.get_function_json())["bindings"]
        triggers = [b for b in bindings if b["type"].endswith("Trigger")]
        if len(triggers) != 1:
            raise IndexingError(f"function {name!r} must have exactly one trigger, has {len(triggers)}")
        trigger = triggers[0]
        if trigger["type"] not in SUPPORTED_TRIGGERS:
            raise IndexingError(
                f"function {name!r}: the local host does not run {trigger['type']} "
                f"(supported: {', '.join(SUPPORTED_TRIGGERS)})"
            )
        others = [b for b in bindings if b is not trigger]
        for other in others:
            if other["type"] not in SUPPORTED_BINDINGS:
                raise IndexingError(
                    f"function {name!r}: binding type {other['type']!r} is not supported locally"
                )
        where = f"function {name!r}"
        handler = function.get_user_function()
        if _binds_sdk_type(handler, trigger):
            trigger = {**trigger, "properties": {"SupportsDeferredBinding": True}}
        info: dict[str, Any] = {}
        if trigger["type"] == BLOB_TRIGGER:
            path = resolve_setting_references(trigger["path"], settings, what=f"{where} (blob path)")
            if "/" not in path:
                raise IndexingError(f"{where}: blob path {path!r} must be '<container>/<pattern>'")
            info = {"path": path, "connection": trigger.get("connection"), "source": trigger.get("source")}
        elif trigger["type"] == TIMER_TRIGGER:
            schedule = resolve_setting_references(trigger["schedule"], settings, what=f"{where} (schedule)")
            parse_schedule(schedule)  # fail at indexing, like the host, not at the first tick
            info = {"schedule": schedule, "run_on_startup": bool(trigger.get("runOnStartup", False))}
        elif trigger["type"] == QUEUE_TRIGGER:
            queue_name = resolve_setting_references(trigger["queueName"], settings, what=f"{where} (queue name)")
            info = {"queue_name": queue_name, "connection": trigger.get("connection")}
        else:
            info = {
                "route": trigger.get("route") or name,
                "methods": tuple(m.upper() for m in (trigger.get("methods") or ())),
                "auth_level": trigger.get("authLevel"),
            }
        indexed.append(
            FunctionInfo(
                name=name,
                trigger_type=trigger["type"],
                trigger_arg=trigger["name"],
                binding=trigger,
                handler=handler,
                inputs=tuple(b for b in others if str(b["direction"]).upper() in ("IN", "0")),
                outputs=tuple(b for b in others if str(b["direction"]).upper() not in ("IN", "0")),
                **info,
            )
        )
    return indexed
