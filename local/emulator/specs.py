"""The official API specs the emulator holds every data-plane request to, per API version.

Azure answers a request by the spec of the API version it names, so the emulator does too:

- authoring (files, uploads, fine-tuning, batches, models): the Azure OpenAI authoring specs
  ``azure-openai/2024-10-21.authoring.json`` (stable), ``2025-04-01-preview.authoring.yaml`` and
  ``v1.authoring.yaml`` (the v1 API, ``<endpoint>/openai/v1/...``, api-version optional: ``v1``/``preview``);
- inference on v1 (``POST /openai/v1/chat/completions``): OpenAI's spec ``openai-openapi.yaml``
  (``CreateChatCompletionRequest``). Learn's API lifecycle page documents that the v1 API takes OpenAI's v1
  chat completions syntax (https://learn.microsoft.com/azure/ai-foundry/openai/api-version-lifecycle);
  no Azure inference spec copy is held, so dated inference routes
  (``/openai/deployments/{id}/chat/completions?api-version=...``) are served but not validated.

A request is checked for: its path and method (absent from the version's spec -> 404), every JSON body
field (one no schema declares -> 400 naming the field and the version), required fields (missing -> 400),
the names of multipart form fields, and JSON types/enums where the schema states them. Query parameters
and headers are not checked. The copies live in ``shared/specs/`` beside the checkout (found by walking up
from the repository root).
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
AUTHORING_SPECS = {
    "2024-10-21": "azure-openai/2024-10-21.authoring.json",
    "2025-04-01-preview": "azure-openai/2025-04-01-preview.authoring.yaml",
    "v1": "azure-openai/v1.authoring.yaml",
}
OPENAI_SPEC = "openai-openapi.yaml"
# ARM (control plane): the held excerpt of the latest stable Microsoft.CognitiveServices spec (its
# deployments paths and Deployment schema). Other ARM api-versions are served but not validated.
ARM_SPECS = {"2026-09-01": "azure-arm/cognitiveservices-2026-09-01.deployments.excerpt.json"}
# Operations of the full 2026-09-01 spec that the excerpt leaves out and the pipeline calls (read in the
# full cognitiveservices.json at commit 5b7c360045c7131cc508c6290dc03237de9950f7, the excerpt's source):
# (method, path template, operationId); none takes a body.
ARM_FULL_SPEC_OPERATIONS = {
    "2026-09-01": (
        (
            "get",
            "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.CognitiveServices"
            "/accounts/{accountName}/deployments",
            "Deployments_List",
        ),
    ),
}
# The async-operation URL ARM hands out in Azure-AsyncOperation: the client polls what it was given
# (https://learn.microsoft.com/azure/azure-resource-manager/management/async-operations).
ARM_ASYNC_OPERATION = "Azure-AsyncOperation URL (ARM asynchronous operations)"
V1 = "v1"
# The v1 API's api-version values (v1.authoring.yaml, AzureAIFoundryModelsApiVersion); both use the v1 spec.
V1_API_VERSIONS = ("v1", "preview")
# Fields Microsoft Learn documents beyond the spec, per (version, method, path). trainingType: the
# fine-tuning how-to (https://learn.microsoft.com/azure/ai-foundry/openai/how-to/fine-tuning) sends it
# for global / developer training with 2025-04-01-preview and later (the v1 API included); no spec
# copy declares it, and 2024-10-21 does not take it.
LEARN_DOCUMENTED_FIELDS: dict[tuple[str, str, str], dict[str, tuple[str, ...]]] = {
    ("2025-04-01-preview", "post", "/fine_tuning/jobs"): {"trainingType": ("standard", "globalstandard", "developer")},
    (V1, "post", "/fine_tuning/jobs"): {"trainingType": ("standard", "globalstandard", "developer")},
}
_METHODS = ("get", "post", "put", "patch", "delete")
_JSON_TYPES: dict[str, type | tuple[type, ...]] = {
    "object": dict,
    "array": list,
    "string": str,
    "boolean": bool,
    "integer": int,
    "number": (int, float),
}


def find_specs_dir(start: Path = REPO_ROOT) -> Path | None:
    """``shared/specs`` beside the checkout: the nearest ``<ancestor>/shared/specs`` above ``start``."""
    for folder in (start, *start.parents):
        candidate = folder / "shared" / "specs"
        if (candidate / AUTHORING_SPECS["2024-10-21"]).is_file():
            return candidate
    return None


CACHE_DIR = REPO_ROOT / ".local-stack" / "spec-cache"  # parsed YAML specs as JSON (git-ignored)


def _load(path: Path) -> dict[str, Any]:
    """A spec document. YAML is parsed once per file version and kept as JSON in ``CACHE_DIR``
    (OpenAI's 3 MB spec takes seconds to parse as YAML, milliseconds as JSON)."""
    if path.suffix == ".json":
        document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return document
    stat = path.stat()
    cached = CACHE_DIR / f"{path.stem}.{stat.st_size}-{stat.st_mtime_ns}.json"
    try:
        document = json.loads(cached.read_text(encoding="utf-8"))
        return document
    except (OSError, ValueError):
        pass
    import yaml  # type: ignore[import-untyped]  # PyYAML ships no types; types-PyYAML is not a dependency

    document = yaml.load(path.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    try:
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        partial = cached.with_suffix(f".{threading.get_ident()}.tmp")
        partial.write_text(json.dumps(document, default=str), encoding="utf-8")
        partial.replace(cached)
    except OSError:
        pass  # a read-only checkout: parse again next time
    return document


@dataclass(frozen=True)
class Operation:
    """One operation of one spec: where its request body schema is and what it may hold."""

    version: str
    method: str
    path: str  # the spec's template, relative to /openai (dated) or /openai/v1
    source: str  # "<spec file> <operationId>"
    body_schema: Any = None  # JSON body schema (with $refs into ``document``), None when it takes none
    form_fields: frozenset[str] | None = None  # multipart field names, None when not multipart
    required_form: frozenset[str] = frozenset()
    document: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    extra_fields: dict[str, tuple[str, ...]] = field(default_factory=dict, compare=False)

    def check(self, body: Any) -> list[str]:
        """Problems with a JSON body, each naming the field; empty when the body is as the spec declares."""
        if self.body_schema is None:
            return []
        body_for_schema = body
        problems: list[str] = []
        if isinstance(body, dict) and self.extra_fields:
            body_for_schema = {k: v for k, v in body.items() if k not in self.extra_fields}
            for name, allowed in self.extra_fields.items():
                value = body.get(name)
                if name in body and (not isinstance(value, str) or value.lower() not in allowed):
                    problems.append(f"field '{name}' must be one of {', '.join(allowed)}")
        return problems + _problems(self.body_schema, body_for_schema, "", self.document, depth=0)

    def check_form(self, names: list[str]) -> list[str]:
        """Problems with multipart field names (``expires_after[seconds]`` counts as ``expires_after``)."""
        if self.form_fields is None:
            return []
        top = [name.split("[", 1)[0] for name in names]
        problems = [f"form field '{name}' is not declared" for name in names if name.split("[", 1)[0] not in self.form_fields]
        problems += [f"required form field '{name}' is missing" for name in sorted(self.required_form) if name not in top]
        return problems


def _resolve(schema: Any, document: dict[str, Any]) -> Any:
    seen = 0
    while isinstance(schema, dict) and "$ref" in schema and seen < 50:
        ref = schema["$ref"]
        if not ref.startswith("#/"):
            return {}  # an external reference: nothing to check against
        target: Any = document
        for part in ref[2:].split("/"):
            target = target.get(part.replace("~1", "/").replace("~0", "~"), {}) if isinstance(target, dict) else {}
        schema = target
        seen += 1
    return schema if isinstance(schema, dict) else {}


def _merged(schema: dict[str, Any], document: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with its ``allOf`` parts folded in (properties and required joined)."""
    if "allOf" not in schema:
        return schema
    merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
    properties = dict(merged.get("properties") or {})
    required = list(merged.get("required") or [])
    for part in schema["allOf"]:
        part = _merged(_resolve(part, document), document)
        properties.update(part.get("properties") or {})
        required += part.get("required") or []
        for key in ("type", "additionalProperties", "oneOf", "anyOf", "enum", "items", "nullable"):
            if key in part and key not in merged:
                merged[key] = part[key]
    if properties:
        merged["properties"] = properties
    if required:
        merged["required"] = required
    return merged


def _type_matches(schema: dict[str, Any], value: Any) -> bool:
    declared = schema.get("type")
    if declared is None:
        return True
    types = declared if isinstance(declared, list) else [declared]
    if value is None:
        return "null" in types or bool(schema.get("nullable")) or bool(schema.get("x-nullable"))
    for name in types:
        python_type = _JSON_TYPES.get(name)
        if python_type is None:
            continue
        if isinstance(value, bool) and name in ("integer", "number"):
            continue
        if isinstance(value, python_type):
            return True
    return "file" in types


def _problems(schema: Any, value: Any, where: str, document: dict[str, Any], *, depth: int) -> list[str]:
    """Undeclared fields, missing required fields, type and enum mismatches of ``value`` under ``schema``."""
    if depth > 40:
        return []
    schema = _merged(_resolve(schema, document), document)
    if not schema:
        return []
    if not _type_matches(schema, value):
        shown = schema.get("type")
        return [f"field '{where}' must be of type {shown}" if where else f"the body must be of type {shown}"]
    if value is None:
        return []
    if "enum" in schema and value not in schema["enum"] and not (
        isinstance(value, str) and schema.get("x-ms-enum", {}).get("modelAsString")
    ):
        return [f"field '{where}' must be one of {', '.join(map(str, schema['enum']))}"]
    if "const" in schema and value != schema["const"]:
        return [f"field '{where}' must be {schema['const']!r}"]
    branches = schema.get("oneOf") or schema.get("anyOf")
    if branches:
        results = [_problems(branch, value, where, document, depth=depth + 1) for branch in branches]
        if not all(results):
            results = [[]]
        else:
            return min(results, key=len)
    problems: list[str] = []
    if isinstance(value, dict):
        properties = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        for name in schema.get("required") or []:
            if name not in value:
                problems.append(f"required field '{where + '.' if where else ''}{name}' is missing")
        for name, item in value.items():
            path = f"{where}.{name}" if where else name
            if name in properties:
                problems += _problems(properties[name], item, path, document, depth=depth + 1)
            elif isinstance(extra, dict) and extra:
                problems += _problems(extra, item, path, document, depth=depth + 1)
            elif extra is True or extra == {} or (not properties and extra is None):
                continue
            else:
                problems.append(f"field '{path}' is not declared")
    elif isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            problems += _problems(schema["items"], item, f"{where}[{index}]", document, depth=depth + 1)
    return problems


# What an operation's request may hold: the JSON body schema, the form fields (None: not a form) and the
# required ones.
_RequestShape = tuple[dict[str, Any] | None, frozenset[str] | None, frozenset[str]]


def _operation(version: str, name: str, document: dict[str, Any], path: str, method: str, op: dict[str, Any]) -> Operation:
    """Operation ``op`` (``method`` on ``path``) of spec ``name``, a Swagger 2.0 or an OpenAPI 3 document."""
    request_shape = _swagger_request if document.get("swagger") else _openapi_request
    body, form_fields, required_form = request_shape(document, path, op)
    return Operation(
        version=version,
        method=method,
        path=path,
        source=f"{name} {op.get('operationId', '')}".strip(),
        body_schema=body,
        form_fields=form_fields,
        required_form=required_form,
        document=document,
    )


def _swagger_request(document: dict[str, Any], path: str, op: dict[str, Any]) -> _RequestShape:
    parameters = [_resolve(p, document) for p in (document["paths"][path].get("parameters") or [])]
    parameters += [_resolve(p, document) for p in op.get("parameters") or []]
    body = next((p.get("schema") for p in parameters if p.get("in") == "body"), None)
    form = [p for p in parameters if p.get("in") == "formData"]
    form_fields = frozenset(p["name"] for p in form) if form else None
    return body, form_fields, frozenset(p["name"] for p in form if p.get("required"))


def _openapi_request(document: dict[str, Any], path: str, op: dict[str, Any]) -> _RequestShape:
    content = (_resolve(op.get("requestBody") or {}, document).get("content")) or {}
    body = (content.get("application/json") or {}).get("schema")
    form_fields = required_form = None
    multipart = (content.get("multipart/form-data") or {}).get("schema")
    if multipart is not None:
        schema = _merged(_resolve(multipart, document), document)
        form_fields = frozenset(schema.get("properties") or {})
        required_form = frozenset(schema.get("required") or [])
    return body, form_fields, required_form or frozenset()


def _template_regex(template: str) -> re.Pattern[str]:
    pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template))
    return re.compile(f"^{pattern}$", re.IGNORECASE if template.startswith("/subscriptions/") else 0)


class SpecCatalog:
    """Every operation of every held spec, by API version."""

    def __init__(self, specs_dir: Path) -> None:
        self.specs_dir = specs_dir
        self._operations: dict[str, list[tuple[re.Pattern[str], Operation]]] = {}
        self._chat: Operation | None = None
        self._lock = threading.Lock()
        for version, relative in AUTHORING_SPECS.items():
            self._add(version, relative)
        self._arm: dict[str, list[tuple[re.Pattern[str], Operation]]] = {}
        for version, relative in ARM_SPECS.items():
            self._add(version, relative, into=self._arm)
            for method, path, operation_id in ARM_FULL_SPEC_OPERATIONS.get(version, ()):
                source = f"{Path(relative).name.replace('.deployments.excerpt', '')} (full spec) {operation_id}"
                self._arm[version].append((_template_regex(path), Operation(version, method, path, source)))

    def _v1_chat(self) -> Operation:
        """v1 inference: OpenAI's ``/chat/completions`` (Learn: the v1 API takes OpenAI's chat syntax).
        Loaded on first use: the file is 3 MB."""
        with self._lock:
            if self._chat is None:
                document = _load(self.specs_dir / OPENAI_SPEC)
                op = document["paths"]["/chat/completions"]["post"]
                self._chat = _operation(V1, OPENAI_SPEC, document, "/chat/completions", "post", op)
            return self._chat

    def _add(self, version: str, relative: str, into: dict[str, list[tuple[re.Pattern[str], Operation]]] | None = None) -> None:
        document = _load(self.specs_dir / relative)
        entries = (self._operations if into is None else into).setdefault(version, [])
        for path, item in document["paths"].items():
            for method in _METHODS:
                if method in item:
                    operation = _operation(version, Path(relative).name, document, path, method, item[method])
                    extra = LEARN_DOCUMENTED_FIELDS.get((version, method, path))
                    if extra:
                        operation = Operation(**{**operation.__dict__, "extra_fields": extra})
                    entries.append((_template_regex(path), operation))
        # Literal segments first (/files/import before /files/{file-id}).
        entries.sort(key=lambda entry: entry[1].path.count("{"))

    def chat_operation(self) -> Operation:
        """OpenAI's ``createChatCompletion``: v1 chat requests and the bodies of batch input lines."""
        return self._v1_chat()

    def preload(self) -> None:
        """Load what is otherwise loaded on first use (call from a background thread)."""
        self._v1_chat()

    @property
    def versions(self) -> tuple[str, ...]:
        return tuple(self._operations)

    def operation(self, version: str, method: str, path: str) -> Operation | None:
        """The operation of ``version`` serving ``method path`` (path relative to the surface), or None."""
        if version == V1 and method.lower() == "post" and path == "/chat/completions":
            return self._v1_chat()
        for pattern, operation in self._operations.get(version, []):
            if operation.method == method.lower() and pattern.match(path):
                return operation
        return None


    @property
    def arm_versions(self) -> tuple[str, ...]:
        return tuple(self._arm)

    def arm_operation(self, version: str, method: str, path: str) -> Operation | None:
        """The ARM operation of ``version`` serving ``method path`` (the full ``/subscriptions/...`` path)."""
        for pattern, operation in self._arm.get(version, []):
            if operation.method == method.lower() and pattern.match(path):
                return operation
        return None


@lru_cache(maxsize=4)
def load_catalog(specs_dir: Path | None = None) -> SpecCatalog | None:
    """The catalog of the spec copies in ``specs_dir`` (found beside the checkout when None); None when absent."""
    folder = specs_dir or find_specs_dir()
    if folder is None:
        return None
    return SpecCatalog(folder)
