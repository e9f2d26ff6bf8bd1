"""Direct dispatch: the listed route answers exactly as the router would, errors included,
and every other request passes through untouched."""

from __future__ import annotations

import functools
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from stockflow.api.direct import DirectRoutes
from stockflow.app import create_app
from stockflow.config import Settings
from stockflow.orders.router import place_order


class Refused(Exception):
    pass


class RefusedHarder(Refused):
    pass


class Unexpected(Exception):
    pass


class Silenced(Exception):
    pass


class ByPartial(Exception):
    pass


async def endpoint(request: Request) -> Response:
    kind = request.query_params.get("raise")
    if kind == "refused":
        raise RefusedHarder("no")
    if kind == "teapot":
        raise HTTPException(418, "short and stout")
    if kind == "gone":
        raise HTTPException(410, "gone")
    if kind == "unexpected":
        raise Unexpected("boom")
    if kind == "silent":
        raise Silenced("nothing to say")
    if kind == "partial":
        raise ByPartial("handled by a partial")
    return PlainTextResponse(f"direct {request.method} {await request.body()!r}", 201)


async def on_refused(_request: Request, exc: Exception) -> Response:
    return JSONResponse({"handled": type(exc).__name__}, status_code=409)


def on_teapot(_request: Request, exc: Exception) -> Response:
    # A plain function, as Starlette allows: run in a worker thread.
    assert isinstance(exc, HTTPException)
    return JSONResponse({"teapot": exc.detail}, status_code=exc.status_code)


async def on_http(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return JSONResponse({"http": exc.status_code}, status_code=exc.status_code)


async def on_silenced(_request: Request, _exc: Exception) -> None:
    return None


async def labelled(label: str, _request: Request, _exc: Exception) -> Response:
    return PlainTextResponse(label, status_code=422)


async def last_resort(_request: Request, _exc: Exception) -> Response:
    return PlainTextResponse("server error middleware's", status_code=500)


async def routed(_request: Request) -> Response:
    return PlainTextResponse("routed")


def _app() -> tuple[Any, dict[str, Any]]:
    handlers: dict[Any, Any] = {
        Refused: on_refused,
        418: on_teapot,
        HTTPException: on_http,
        Silenced: on_silenced,
        ByPartial: functools.partial(labelled, "partial"),
        # Starlette hands these to its server-error middleware, not to route handling.
        Exception: last_resort,
        500: last_resort,
    }
    inner = FastAPI()
    inner.add_api_route("/things", routed, methods=["GET", "POST"])
    inner.add_api_route("/things/more", routed, methods=["POST"])
    direct = APIRoute("/things", endpoint, methods=["POST"])
    app = DirectRoutes(inner, routes={("POST", "/things"): direct}, handlers=handlers)
    return app, handlers


async def _call(method: str, path: str, root_path: str = "", **kwargs: Any) -> httpx.Response:
    app, _ = _app()
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=True, root_path=root_path)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.request(method, path, **kwargs)


async def test_the_listed_method_and_path_go_to_the_endpoint() -> None:
    response = await _call("POST", "/things", content=b"body")
    assert (response.status_code, response.text) == (201, "direct POST b'body'")


@pytest.mark.parametrize(("method", "path"), [("GET", "/things"), ("POST", "/things/more")])
async def test_any_other_request_passes_through(method: str, path: str) -> None:
    response = await _call(method, path)
    assert (response.status_code, response.text) == (200, "routed")


async def test_a_near_miss_is_the_routers_to_answer() -> None:
    response = await _call("POST", "/things/")
    assert (response.status_code, response.headers["location"]) == (307, "http://test/things")


async def test_an_exception_gets_the_handler_of_its_closest_class() -> None:
    response = await _call("POST", "/things?raise=refused")
    assert (response.status_code, response.json()) == (409, {"handled": "RefusedHarder"})


async def test_an_http_exception_gets_its_status_handler_first_then_its_class() -> None:
    teapot = await _call("POST", "/things?raise=teapot")
    assert (teapot.status_code, teapot.json()) == (418, {"teapot": "short and stout"})
    gone = await _call("POST", "/things?raise=gone")
    assert (gone.status_code, gone.json()) == (410, {"http": 410})


async def test_a_partial_async_handler_is_awaited() -> None:
    response = await _call("POST", "/things?raise=partial")
    assert (response.status_code, response.text) == (422, "partial")


async def test_a_handler_that_answers_nothing_sends_nothing() -> None:
    app, _ = _app()
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/things",
        "root_path": "",
        "query_string": b"raise=silent",
        "headers": [],
    }
    await app(scope, receive, send)
    assert sent == []


async def test_under_a_root_path_the_route_is_matched_as_the_router_matches_it() -> None:
    response = await _call("POST", "/api/things", root_path="/api", content=b"x")
    assert (response.status_code, response.text) == (201, "direct POST b'x'")


async def test_an_exception_without_a_handler_propagates() -> None:
    # Even with handlers for ``Exception`` and 500 in the table: those are the server-error
    # middleware's, which answers outside the request context.
    with pytest.raises(Unexpected):
        await _call("POST", "/things?raise=unexpected")


def test_stockflow_places_orders_directly() -> None:
    app = create_app(Settings(database_url="sqlite+aiosqlite:///:memory:"))
    direct = [m for m in app.user_middleware if m.cls is DirectRoutes]  # type: ignore[comparison-overlap]
    assert len(direct) == 1
    routes: dict[tuple[str, str], Any] = direct[0].kwargs["routes"]  # type: ignore[assignment]
    assert list(routes) == [("POST", "/v1/orders")]
    assert routes[("POST", "/v1/orders")].endpoint is place_order
    # The application's own table, so handlers added later apply too.
    assert direct[0].kwargs["handlers"] is app.exception_handlers
