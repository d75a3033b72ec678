"""Calling a function's handler with its trigger value, input and output bindings and ``context``, as the
Python worker does: blob inputs are read before the call, blob and queue outputs written after it.

Binding expressions: ``%SETTING%`` (app settings) and ``{name}`` (the trigger's binding data, plus
``rand-guid`` and ``DateTime``) in blob paths; ``%SETTING%`` in queue names.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import re
import uuid
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from azure.functions.blob import InputStream

from local.host.connections import Connections
from local.host.indexing import FunctionInfo, IndexingError, resolve_setting_references
from local.host.invocations import Invocation, InvocationLogs
from local.host.queues import QueueOptions


class Out:
    """A concrete ``azure.functions.Out`` for output bindings."""

    def __init__(self) -> None:
        self._value: Any = None

    def set(self, value: Any) -> None:
        self._value = value

    def get(self) -> Any:
        return self._value


@dataclass
class Context:
    """The subset of ``azure.functions.Context`` a handler may read."""

    invocation_id: str
    function_name: str
    function_directory: str


class HandlerCaller:
    """Calls handlers of the app under ``app_root`` with their bindings (see the module docstring)."""

    def __init__(
        self,
        app_root: Path,
        settings: Mapping[str, str],
        connections: Connections,
        queue_options: QueueOptions,
        logs: InvocationLogs,
    ) -> None:
        self.app_root = app_root
        self.settings = settings
        self.connections = connections
        self.queue_options = queue_options
        self.logs = logs

    def call(
        self,
        info: FunctionInfo,
        trigger_value: Any,
        binding_data: dict[str, str],
        invocation: Invocation | None = None,
    ) -> Any:
        """Call the handler with the trigger, input bindings, output bindings and ``context``; records it
        logs on this thread are kept on ``invocation``. Returns what the handler returned."""
        handler = info.handler
        parameters = inspect.signature(handler).parameters
        arguments: dict[str, Any] = {info.trigger_arg: trigger_value}
        binding_data = {
            **binding_data,
            "rand-guid": str(uuid.uuid4()),
            "DateTime": datetime.now(UTC).isoformat(),
        }
        for binding in info.inputs:
            if binding["type"] == "blob":
                arguments[binding["name"]] = self._read_input_blob(info, binding, binding_data)
        outputs: dict[str, Out] = {}
        for binding in info.outputs:
            if binding["name"] != "$return":
                outputs[binding["name"]] = arguments[binding["name"]] = Out()
        if "context" in parameters and "context" not in arguments:
            arguments["context"] = Context(str(uuid.uuid4()), info.name, str(self.app_root))
        unknown = [name for name in arguments if name not in parameters]
        if unknown:
            raise IndexingError(
                f"{info.name}: the handler has no parameter(s) {unknown} its bindings declare"
            )
        with self.logs.attributed_to(invocation):
            result = handler(**arguments)
            if inspect.isawaitable(result):
                result = asyncio.run(_await(result))
        for binding in info.outputs:
            if binding["type"] == "blob" and binding["name"] in outputs:
                value = outputs[binding["name"]].get()
                if value is not None:
                    self._write_output_blob(info, binding, binding_data, value)
            elif binding["type"] == "queue" and binding["name"] in outputs:
                value = outputs[binding["name"]].get()
                if value is not None:
                    self._send_output_messages(info, binding, value)
        return result

    def _binding_path(
        self, info: FunctionInfo, binding: dict[str, Any], binding_data: dict[str, str]
    ) -> tuple[str, str]:
        path = resolve_setting_references(
            binding["path"], self.settings, what=f"{info.name} ({binding['name']})"
        )

        def substitute(found: re.Match[str]) -> str:
            name = found.group(1)
            if name not in binding_data:
                raise IndexingError(
                    f"{info.name}: binding path {binding['path']!r} uses {{{name}}}, which the trigger does not supply"
                )
            return binding_data[name]

        container, _, name = re.sub(r"\{([^}]+)\}", substitute, path).partition("/")
        return container, name

    def _read_input_blob(
        self, info: FunctionInfo, binding: dict[str, Any], binding_data: dict[str, str]
    ) -> InputStream | None:
        from azure.core.exceptions import ResourceNotFoundError

        container, name = self._binding_path(info, binding, binding_data)
        account = self.connections.account(binding.get("connection"), info.name)
        client = account.blobs.get_blob_client(container, name)
        try:
            data = client.download_blob().readall()
        except ResourceNotFoundError:
            return None
        return InputStream(data=data, name=f"{container}/{name}", uri=client.url, length=len(data))

    def _write_output_blob(
        self, info: FunctionInfo, binding: dict[str, Any], binding_data: dict[str, str], value: Any
    ) -> None:
        from azure.core.exceptions import ResourceExistsError

        container, name = self._binding_path(info, binding, binding_data)
        if hasattr(value, "read"):
            value = value.read()
        if isinstance(value, str):
            value = value.encode("utf-8")
        account = self.connections.account(binding.get("connection"), info.name)
        container_client = account.blobs.get_container_client(container)
        try:
            container_client.create_container()
        except ResourceExistsError:
            pass
        container_client.upload_blob(name, value, overwrite=True)

    def _send_output_messages(self, info: FunctionInfo, binding: dict[str, Any], value: Any) -> None:
        """A queue output binding: one message per item when the function set a list, else one."""
        name = resolve_setting_references(binding["queueName"], self.settings, what=f"{info.name} ({binding['name']})")
        queue = self.connections.queues(binding.get("connection"), info.name).get(name)
        for item in value if isinstance(value, list) else [value]:
            text = item.decode("utf-8") if isinstance(item, bytes) else item if isinstance(item, str) else json.dumps(item)
            queue.send_message(self.queue_options.encode(text))


async def _await(awaitable: Awaitable[Any]) -> Any:
    return await awaitable
