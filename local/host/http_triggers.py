"""HTTP triggers: route a request to the function whose route template matches (the most literal route
first), call it on the HTTP pool (so a route answers while long triggers occupy the trigger pool, as on
Azure) and turn what it returns into an ``azure.functions.HttpResponse`` (a failure is a 500)."""

from __future__ import annotations

import time
import traceback
from collections.abc import Mapping
from typing import Any

from local.host.indexing import HTTP_TRIGGER, FunctionInfo
from local.host.invocations import FAILED, SUCCEEDED, Invocation, InvocationRunner
from local.host.routes import compile_route


class HttpTriggers:
    """The HTTP-triggered functions of one host."""

    def __init__(self, functions: list[FunctionInfo], runner: InvocationRunner) -> None:
        self.functions = [f for f in functions if f.trigger_type == HTTP_TRIGGER]
        self._runner = runner

    def handle(self, method: str, path: str, *, url: str, headers: Mapping[str, str],
               params: Mapping[str, str], body: bytes) -> Invocation | None:  # fmt: skip
        """Route one request (``path`` below the route prefix) to its function; None when no route matches."""
        import azure.functions as func

        for info, route_params in self._match_route(path):
            if info.methods and method.upper() not in info.methods:
                continue
            request = func.HttpRequest(
                method.upper(), url, headers=dict(headers), params=dict(params),
                route_params=route_params, body=body,
            )  # fmt: skip
            return self._runner.pool.submit(self.invoke, info, request).result()
        return None

    def tick(self, info: FunctionInfo) -> Invocation:
        """Call ``info`` now with a GET without parameters (the admin route's run)."""
        import azure.functions as func

        request = func.HttpRequest("GET", f"http://127.0.0.1/admin/functions/{info.name}", body=b"", route_params={})
        return self._runner.pool.submit(self.invoke, info, request).result()

    def allowed_methods(self, path: str) -> set[str]:
        """The methods the functions whose route matches ``path`` accept (for a 405 answer)."""
        return {m for info, _ in self._match_route(path) for m in (info.methods or ("GET", "POST"))}

    def _match_route(self, path: str) -> list[tuple[FunctionInfo, dict[str, str]]]:
        matches = []
        for info in self.functions:
            if info.route is None:
                continue
            route_params = compile_route(info.route).match(path)
            if route_params is not None:
                matches.append((info.route.count("{"), info, route_params))
        matches.sort(key=lambda item: item[0])  # the most literal route first
        return [(info, params) for _, info, params in matches]

    def invoke(self, info: FunctionInfo, request: Any) -> Invocation:
        """Call ``info`` with ``request``; the invocation's ``response`` is what to answer."""
        import azure.functions as func

        invocation = Invocation(info.name, HTTP_TRIGGER, f"{request.method} {request.url}")
        start = time.perf_counter()
        invocation.attempts = 1
        try:
            parameters = {**dict(request.params), **dict(request.route_params)}
            result = self._runner.call(info, request, parameters, invocation)
            if isinstance(result, func.HttpResponse):
                invocation.response = result
            elif result is None:
                invocation.response = func.HttpResponse(status_code=204)
            else:
                invocation.response = func.HttpResponse(
                    result if isinstance(result, (str, bytes)) else str(result)
                )
            invocation.outcome = SUCCEEDED
        except Exception:
            invocation.outcome = FAILED
            invocation.error = traceback.format_exc(limit=-3)
            invocation.response = func.HttpResponse("Internal Server Error", status_code=500)
        finally:
            self._runner.finish(invocation, start)
        return invocation
