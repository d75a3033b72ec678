"""HTTP trigger route templates (ASP.NET style, as Azure Functions reads them), matched against paths.

Supported: literal segments, ``{name}``, optional ``{name?}`` (only as trailing segments), constraints
``{id:int}``, ``{x:alpha}``, ``{b:bool}``, ``{g:guid}`` (others are accepted and not checked), and a
catch-all ``{*rest}`` as the last segment. Matching is case-insensitive for literals, like ASP.NET.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_PARAMETER_RE = re.compile(r"^\{(\*)?(\w+)(?::(\w+))?(\?)?\}$")
_CONSTRAINTS = {
    "int": r"-?\d+",
    "long": r"-?\d+",
    "alpha": r"[A-Za-z]+",
    "bool": r"(?i:true|false)",
    "guid": r"[0-9A-Fa-f]{8}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{12}",
}


class RouteError(ValueError):
    """A route template the local host cannot read."""


@dataclass(frozen=True)
class RouteTemplate:
    """A compiled route template: ``match(path)`` gives the route parameters or None."""

    template: str
    regex: re.Pattern[str]

    def match(self, path: str) -> dict[str, str] | None:
        """Route parameters for ``path`` (no leading slash, no route prefix), or None if no match."""
        found = self.regex.fullmatch(path.strip("/"))
        if found is None:
            return None
        return {name: value for name, value in found.groupdict().items() if value is not None}


def compile_route(template: str) -> RouteTemplate:
    """Compile a route template such as ``status/{dataset?}``; raise ``RouteError`` when invalid."""
    segments = [s for s in template.strip("/").split("/") if s] if template.strip("/") else []
    pattern = ""
    optional_seen = False
    for index, segment in enumerate(segments):
        separator = "/" if index else ""
        parameter = _PARAMETER_RE.match(segment)
        if parameter is None:
            if "{" in segment or "}" in segment:
                raise RouteError(f"route {template!r}: segment {segment!r} mixes text and parameters")
            if optional_seen:
                raise RouteError(f"route {template!r}: an optional parameter must be the last segment")
            pattern += re.escape(separator) + "(?i:" + re.escape(segment) + ")"
            continue
        catch_all, name, constraint, optional = parameter.groups()
        if optional_seen:
            raise RouteError(f"route {template!r}: an optional parameter must be the last segment")
        if catch_all:
            if index != len(segments) - 1:
                raise RouteError(f"route {template!r}: a catch-all parameter must be the last segment")
            pattern += f"(?:{re.escape(separator)}(?P<{name}>.+))?"
            continue
        value = _CONSTRAINTS.get((constraint or "").lower(), r"[^/]+")
        group = f"{re.escape(separator)}(?P<{name}>{value})"
        if optional:
            optional_seen = True
            pattern += f"(?:{group})?"
        else:
            pattern += group
    return RouteTemplate(template=template, regex=re.compile(pattern))
