"""Direct dispatch of the busiest route, ahead of the framework's router.

Placing an order is the one request whose throughput decides how Stockflow compares with
the database it runs on. Between the outer middleware and the endpoint, FastAPI's routing
(the exception middleware, the exit-stack middleware, matching the path against every
route, building the request and solving an empty list of dependencies) cost about a
quarter of the CPU of a whole order, measured with a sampling profiler under load. The
route stays declared in FastAPI, which documents it in OpenAPI; here its endpoint is called
for the exact method and path, with the application's own exception handlers answering for
what it raises, exactly as the router would (decision 22). Everything else passes through.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi.routing import APIRoute
from opentelemetry import trace
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from stockflow.observability import tracing

Endpoint = Callable[[Request], Awaitable[Response]]
Handler = Callable[[Request, Exception], Any]


class DirectRoutes:
    """Serves ``(method, path)`` pairs straight from their declared routes' endpoints.

    ``handlers`` is the application's own exception-handler table (keyed by exception class
    or HTTP status code), read at each error, so handlers added later still apply.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        routes: Mapping[tuple[str, str], APIRoute],
        handlers: Mapping[Any, Handler],
    ) -> None:
        self.app = app
        self._routes = dict(routes)
        self._handlers = handlers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = (
            self._routes.get((scope["method"], _route_path(scope)))
            if scope["type"] == "http"
            else None
        )
        if route is None:
            await self.app(scope, receive, send)
            return
        # What the router would have recorded: the route (for metrics and the access line)
        # and, when tracing, the server span's route and name.
        scope["route"] = route
        if tracing.enabled():
            _name_server_span(scope["method"], _route_path(scope))
        endpoint: Endpoint = route.endpoint
        request = Request(scope, receive, send)
        response: Response | None
        try:
            response = await endpoint(request)
        except Exception as exc:
            handler = self._handler_for(exc)
            if handler is None:
                raise
            if _is_async(handler):
                response = await handler(request, exc)
            else:
                response = await run_in_threadpool(handler, request, exc)
            if response is None:
                return
        await response(scope, receive, send)

    def _handler_for(self, exc: Exception) -> Handler | None:
        """The handler Starlette's exception middleware would pick: by status code for an
        HTTP exception, else by the closest class in the exception's MRO. Handlers for 500
        and for ``Exception`` are the server-error middleware's, outside this one, and are
        left to it as the router's path leaves them."""
        if isinstance(exc, HTTPException) and exc.status_code in self._handlers:
            return self._handlers[exc.status_code]
        for cls in type(exc).__mro__:
            if cls is Exception:
                return None
            if cls in self._handlers:
                return self._handlers[cls]
        return None


def _name_server_span(method: str, template: str) -> None:
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attribute("http.route", template)
        span.update_name(f"{method} {template}")


def _route_path(scope: Scope) -> str:
    """The path the router matches: the request's path less the application's root path,
    as Starlette strips it."""
    path: str = scope["path"]
    root_path: str = scope.get("root_path", "")
    if not root_path or not path.startswith(root_path):
        return path
    if path == root_path:
        return ""
    return path[len(root_path) :] if path[len(root_path)] == "/" else path


def _is_async(handler: Any) -> bool:
    while isinstance(handler, functools.partial):
        handler = handler.func
    # A function, or an object whose class defines an async __call__.
    return inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
        type(handler).__call__
    )
