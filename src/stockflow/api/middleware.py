"""Request context: the request id, the last-resort 500, the access line and the HTTP
metrics.

The request id is taken from a sane ``X-Request-ID`` or minted, bound to every log line and
echoed back. Unexpected exceptions are turned into a problem response here rather than by
Starlette's outermost error middleware, because only here is the request id still known and
the response headers still ours to set. Each request ends with one access line and one
observation of the HTTP metrics, labelled by route template (``/v1/orders/{order_id}``),
never by the raw path, so that neither grows with the number of orders.
"""

from __future__ import annotations

import re
import secrets
from time import perf_counter
from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stockflow.api.problems import internal_error_response, problem_response
from stockflow.observability import metrics
from stockflow.observability.logging import get_logger, info_enabled, request_id_var

_ACCEPTABLE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
log = get_logger(__name__)
access = get_logger("stockflow.access")

# Every answer is JSON for a program, never a page to render, frame or cache: browsers are
# told so. Headers a response sets itself are left as it set them.
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"cache-control", b"no-store"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-resource-policy", b"same-origin"),
)
# Behind TLS (production), browsers are told to use nothing else for two years.
HSTS: tuple[bytes, bytes] = (b"strict-transport-security", b"max-age=63072000; includeSubDomains")
# The interactive API documentation is a page that loads its scripts and styles: it keeps
# only the headers that do not stop it from working.
_PAGE_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc"})
_PAGE_HEADERS = frozenset({b"content-security-policy", b"cross-origin-resource-policy"})


def route_template(scope: Scope) -> str:
    """The template of the route that served the request (``/v1/orders/{order_id}``), or
    one label for every path that matched none (a 404 must not mint a new series per URL).

    The router records the route as its router declared it, without the prefix it was
    included under (``/orders/{order_id}``); the prefix is the request path's leading
    segments that the template does not account for."""
    route: Any = scope.get("route")
    template = getattr(route, "path_format", None)
    if not isinstance(template, str):
        return metrics.UNMATCHED_ROUTE
    path: str = scope["path"]
    extra = path.count("/") - template.count("/")
    if extra > 0:
        template = "/".join(path.split("/")[: extra + 1]) + template
    return template


class RequestContextMiddleware:
    def __init__(
        self, app: ASGIApp, *, hsts: bool = False, max_body_bytes: int | None = None
    ) -> None:
        self.app = app
        self._max_body = max_body_bytes
        self._headers = (*SECURITY_HEADERS, HSTS) if hsts else SECURITY_HEADERS
        self._page_headers = tuple(h for h in self._headers if h[0] not in _PAGE_HEADERS)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_headers = dict(scope["headers"])
        incoming = request_headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _ACCEPTABLE.match(incoming) else f"req_{secrets.token_hex(12)}"
        token = request_id_var.set(request_id)
        began = perf_counter()
        stats, stats_token = metrics.start_request()
        started = False
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal started, status
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                headers = MutableHeaders(scope=message)
                headers["X-Request-ID"] = request_id
                present = {name for name, _value in headers.raw}
                wanted = self._page_headers if scope["path"] in _PAGE_PATHS else self._headers
                headers.raw.extend(h for h in wanted if h[0] not in present)
            await send(message)

        refusal: Response | None = None
        if "\x00" in scope.get("path", "") or b"%00" in scope.get("query_string", b""):
            # No resource has a NUL in its name, and PostgreSQL cannot even compare one.
            refusal = problem_response(
                status=400, detail="The URL must not contain NUL characters."
            )
        elif self._max_body is not None:
            declared = request_headers.get(b"content-length", b"")
            if declared.isdigit() and int(declared) > self._max_body:
                refusal = _too_large(self._max_body)
            else:
                receive = _bounded(receive, self._max_body)
        try:
            if refusal is not None:
                await refusal(scope, receive, send_with_id)
                return
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("unhandled_exception", path=scope.get("path"), method=scope.get("method"))
            if started:
                raise
            await internal_error_response()(scope, receive, send_with_id)
        finally:
            self._finish(scope, status, began, stats.statements)
            metrics.end_request(stats_token)
            request_id_var.reset(token)

    @staticmethod
    def _finish(scope: Scope, status: int, began: float, statements: int) -> None:
        seconds = perf_counter() - began
        method: str = scope["method"]
        if method not in metrics.KNOWN_METHODS:
            method = "OTHER"
        route = route_template(scope)
        metrics.observe_request(
            method=method, route=route, status=status, seconds=seconds, statements=statements
        )
        if info_enabled() and scope["path"] not in metrics.PROBE_PATHS:
            access.info(
                "request",
                method=method,
                route=route,
                path=scope["path"],
                status=status,
                duration_ms=round(seconds * 1000, 2),
                statements=statements,
            )


def _too_large(limit: int) -> Response:
    return problem_response(
        status=413, detail=f"The request body is larger than {limit} bytes, the most accepted."
    )


def _bounded(receive: Receive, limit: int) -> Receive:
    """``receive`` that refuses a body growing past ``limit`` (one sent without a
    Content-Length, or longer than it said) as it arrives, with a 413 the handlers render."""
    received = 0

    async def bounded() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise HTTPException(
                    413, f"The request body is larger than {limit} bytes, the most accepted."
                )
        return message

    return bounded
