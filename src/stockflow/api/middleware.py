"""Request context: the request id, and the last-resort 500.

The request id is taken from a sane ``X-Request-ID`` or minted, bound to every log line and
echoed back. Unexpected exceptions are turned into a problem response here rather than by
Starlette's outermost error middleware, because only here is the request id still known and
the response headers still ours to set.
"""

from __future__ import annotations

import re
import secrets

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stockflow.api.problems import internal_error_response, problem_response
from stockflow.observability.logging import get_logger, request_id_var

_ACCEPTABLE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
log = get_logger(__name__)


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _ACCEPTABLE.match(incoming) else f"req_{secrets.token_hex(12)}"
        token = request_id_var.set(request_id)
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                MutableHeaders(scope=message)["X-Request-ID"] = request_id
            await send(message)

        if "\x00" in scope.get("path", "") or b"%00" in scope.get("query_string", b""):
            # No resource has a NUL in its name, and PostgreSQL cannot even compare one.
            await problem_response(status=400, detail="The URL must not contain NUL characters.")(
                scope, receive, send_with_id
            )
            request_id_var.reset(token)
            return
        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("unhandled_exception", path=scope.get("path"), method=scope.get("method"))
            if started:
                raise
            await internal_error_response()(scope, receive, send_with_id)
        finally:
            request_id_var.reset(token)
