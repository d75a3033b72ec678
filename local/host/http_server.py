"""The local host's HTTP front: ``/api/<route>`` for HTTP triggers, plus Core Tools' admin routes.

- ``GET /admin/host/status``: ``{"state": "Running", "id": <host id>}`` (a health check).
- ``GET /admin/functions``: the indexed functions.
- ``POST /admin/functions/<name>`` with ``{"input": "<container>/<blob>"}`` (blob triggers) or ``{}``:
  runs the function now and answers 202 with the invocation as JSON once it has finished (Core Tools
  answers 202 at once; waiting lets ``visiontune local tick`` print the outcome).
Listens on 127.0.0.1 only; function keys are not checked locally (as with Core Tools).
"""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

if TYPE_CHECKING:
    from local.host.host import LocalFunctionsHost

log = logging.getLogger("visiontune.local.host.http")


def _route_prefix(host: LocalFunctionsHost) -> str:
    """``extensions.http.routePrefix`` from host.json (default ``api``)."""
    host_json = host.app_root / "host.json"
    if host_json.exists():
        try:
            prefix = (
                json.loads(host_json.read_text(encoding="utf-8"))
                .get("extensions", {})
                .get("http", {})
                .get("routePrefix")
            )
        except ValueError:
            prefix = None
        if prefix is not None:
            return str(prefix).strip("/")
    return "api"


def start_http_server(host: LocalFunctionsHost, port: int) -> ThreadingHTTPServer:
    """Serve ``host`` on ``127.0.0.1:port`` (0: a free port) in a daemon thread; returns the server."""
    prefix = _route_prefix(host)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "visiontune-functions-host"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
            log.debug("%s " + format, self.address_string(), *args)

        def _send(self, status: int, body: bytes, content_type: str = "application/json",
                  headers: dict[str, str] | None = None) -> None:  # fmt: skip
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for key, value in (headers or {}).items():
                if key.lower() not in ("content-length", "content-type"):
                    self.send_header(key, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _json(self, status: int, value: Any) -> None:
            self._send(status, json.dumps(value, indent=2, default=str).encode("utf-8"))

        def _handle(self) -> None:
            split = urlsplit(self.path)
            path = split.path.strip("/")
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            if path.startswith("admin/"):
                self._admin(path, body)
                return
            if prefix:
                if path != prefix and not path.startswith(prefix + "/"):
                    self._json(404, {"error": f"no route {split.path!r} (functions live under /{prefix}/)"})
                    return
                path = path[len(prefix) :].strip("/")
            invocation = host.handle_http(
                self.command,
                path,
                url=f"http://{self.headers.get('Host', '127.0.0.1')}{self.path}",
                headers=dict(self.headers.items()),
                params=dict(parse_qsl(split.query, keep_blank_values=True)),
                body=body,
            )
            if invocation is None:
                allowed = host.allowed_methods(path)
                if allowed:
                    self._json(
                        405, {"error": f"method {self.command} not allowed", "allowed": sorted(allowed)}
                    )
                else:
                    self._json(404, {"error": f"no function serves {split.path!r}"})
                return
            response = invocation.response
            content_type = response.mimetype or "text/plain"
            if response.charset and not content_type.startswith(("image/", "application/octet-stream")):
                content_type += f"; charset={response.charset}"
            self._send(response.status_code, response.get_body() or b"", content_type, dict(response.headers))

        def _admin(self, path: str, body: bytes) -> None:
            parts = path.split("/")
            if parts == ["admin", "host", "status"] and self.command == "GET":
                self._json(200, {"state": "Running", "id": host.host_id})
            elif parts == ["admin", "functions"] and self.command == "GET":
                self._json(200, [_describe(f) for f in host.functions()])
            elif len(parts) == 3 and parts[:2] == ["admin", "functions"] and self.command == "POST":
                try:
                    payload = json.loads(body or b"{}")
                    blob_path = payload.get("input") or None if isinstance(payload, dict) else None
                    invocation = host.tick(parts[2], blob_path=blob_path)
                except KeyError as error:
                    self._json(404, {"error": str(error.args[0])})
                    return
                except ValueError as error:
                    self._json(400, {"error": str(error)})
                    return
                self._json(202, invocation.to_json())
            else:
                self._json(404, {"error": f"no admin route {self.command} /{path}"})

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _handle

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="host-http", daemon=True).start()
    return server


def _describe(info: Any) -> dict[str, Any]:
    return {
        "name": info.name,
        "trigger": info.trigger_type,
        "path": info.path,
        "connection": info.connection,
        "schedule": info.schedule,
        "route": info.route,
        "methods": list(info.methods),
    }
