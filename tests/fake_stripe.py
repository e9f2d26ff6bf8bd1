"""A fake of the slice of Stripe's HTTP API that Stockflow uses, served on loopback by a
real HTTP server (uvicorn), for the real SDK pointed at it through its API base.

It keeps PaymentIntents and refunds in memory, honours ``Idempotency-Key`` as Stripe does
(the same key gives the first answer again; the same key while its first request is still
running gives 409), records every request, and notes whether two requests with one key ever
overlapped. Tests script failures (a 500, a hang past the client's timeout) and move
intents along (succeed, fail) as a customer paying would.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import stripe

from tests.loopback import free_port, serving

WEBHOOK_SECRET = "whsec_test_stockflow_fake"
SECRET_KEY = "sk_test_stockflow_fake"


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    params: dict[str, str]
    idempotency_key: str | None


def _form(body: bytes) -> dict[str, str]:
    return dict(parse_qsl(body.decode(), keep_blank_values=True))


@dataclass
class FakeStripe:
    port: int
    intents: dict[str, dict[str, Any]] = field(default_factory=dict)
    refunds: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    # Scripted answers for the next calls to a path: ("status", code) or ("hang", seconds).
    failures: dict[str, list[tuple[str, float]]] = field(default_factory=dict)
    overlapping_keys: list[str] = field(default_factory=list)
    in_flight_max: int = 0
    _in_flight: set[str] = field(default_factory=set)
    _answers: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    latency: float = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def fail_next(self, path: str, *answers: tuple[str, float]) -> None:
        """``path`` like ``/v1/payment_intents``; each answer is ("status", 500), ("hang",
        seconds: nothing done, answered late) or ("slow", seconds: done, answered late)."""
        self.failures.setdefault(path, []).extend(answers)

    def calls_to(self, method: str, path: str) -> list[Call]:
        return [c for c in self.calls if c.method == method and c.path == path]

    # --- what a paying customer and Stripe's back office do -----------------------------

    def succeed(self, intent_id: str) -> dict[str, Any]:
        intent = self.intents[intent_id]
        intent.update(
            status="succeeded", amount_received=intent["amount"], latest_charge=f"ch_{intent_id}"
        )
        return dict(intent)

    def fail(self, intent_id: str, message: str = "Your card was declined.") -> dict[str, Any]:
        intent = self.intents[intent_id]
        intent.update(
            status="requires_payment_method",
            last_payment_error={"type": "card_error", "code": "card_declined", "message": message},
        )
        return dict(intent)

    def set_status(self, intent_id: str, status: str) -> None:
        self.intents[intent_id]["status"] = status

    def event(self, event_type: str, obj: dict[str, Any], *, event_id: str | None = None) -> str:
        return json.dumps(
            {
                "id": event_id or f"evt_{next(self._ids):08d}",
                "object": "event",
                "type": event_type,
                "api_version": "2026-10-28.endive",
                "created": int(time.time()),
                "livemode": False,
                "data": {"object": obj},
            }
        )

    @staticmethod
    def sign(payload: str, *, timestamp: int | None = None, secret: str = WEBHOOK_SECRET) -> str:
        header: str = stripe.WebhookSignature.generate_signature_header(
            payload, secret, timestamp=timestamp
        )
        return header

    # --- the API ---------------------------------------------------------------------

    def _new_intent(self, params: dict[str, str]) -> dict[str, Any]:
        number = next(self._ids)
        intent_id = f"pi_{number:010d}"
        intent = {
            "id": intent_id,
            "object": "payment_intent",
            "amount": int(params["amount"]),
            "amount_received": 0,
            "currency": params["currency"],
            "status": "requires_payment_method",
            "client_secret": f"{intent_id}_secret_{number:06d}",
            "metadata": {
                key[len("metadata[") : -1]: value
                for key, value in params.items()
                if key.startswith("metadata[")
            },
            "automatic_payment_methods": {
                "enabled": params.get("automatic_payment_methods[enabled]") == "true"
            },
            "latest_charge": None,
            "last_payment_error": None,
            "created": int(time.time()),
        }
        self.intents[intent_id] = intent
        return intent

    def _route(self, method: str, path: str, params: dict[str, str]) -> tuple[int, dict[str, Any]]:
        parts = path.strip("/").split("/")
        if method == "POST" and path == "/v1/payment_intents":
            return 200, dict(self._new_intent(params))
        if parts[:2] == ["v1", "payment_intents"] and len(parts) >= 3:
            intent = self.intents.get(parts[2])
            if intent is None:
                return 404, _error(
                    "invalid_request_error", "No such payment_intent", "resource_missing"
                )
            if method == "GET" and len(parts) == 3:
                return 200, dict(intent)
            if method == "POST" and parts[3:] == ["cancel"]:
                if intent["status"] in ("succeeded", "canceled", "processing"):
                    return 400, _error(
                        "invalid_request_error",
                        f"This PaymentIntent's status is {intent['status']}.",
                        "payment_intent_unexpected_state",
                    )
                intent["status"] = "canceled"
                return 200, dict(intent)
        if method == "GET" and path == "/v1/payment_intents":
            since = int(params.get("created[gte]", "0"))
            listed = sorted(
                (i for i in self.intents.values() if i["created"] >= since),
                key=lambda i: i["id"],
                reverse=True,
            )
            after = params.get("starting_after")
            if after is not None:
                ids = [i["id"] for i in listed]
                listed = listed[ids.index(after) + 1 :] if after in ids else []
            limit = int(params.get("limit", "10"))
            return 200, {
                "object": "list",
                "url": "/v1/payment_intents",
                "has_more": len(listed) > limit,
                "data": [dict(i) for i in listed[:limit]],
            }
        if method == "POST" and path == "/v1/refunds":
            intent = self.intents.get(params.get("payment_intent", ""))
            if intent is None or intent["status"] != "succeeded":
                return 400, _error(
                    "invalid_request_error", "Nothing to refund.", "charge_not_refundable"
                )
            amount = int(params.get("amount", intent["amount_received"]))
            refunded = sum(
                r["amount"] for r in self.refunds.values() if r["payment_intent"] == intent["id"]
            )
            if refunded + amount > intent["amount_received"]:
                return 400, _error(
                    "invalid_request_error", "Refund exceeds the charge.", "amount_too_large"
                )
            refund_id = f"re_{next(self._ids):010d}"
            refund = {
                "id": refund_id,
                "object": "refund",
                "amount": amount,
                "payment_intent": intent["id"],
                "status": "succeeded",
                "metadata": {
                    key[len("metadata[") : -1]: value
                    for key, value in params.items()
                    if key.startswith("metadata[")
                },
            }
            self.refunds[refund_id] = refund
            return 200, dict(refund)
        return 404, _error("invalid_request_error", f"Unrecognized request URL ({method} {path}).")

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        method, path = scope["method"], scope["path"]
        params = _form(body) if method == "POST" else _form(scope.get("query_string", b""))
        key = headers.get("idempotency-key") if method == "POST" else None
        self.calls.append(Call(method, path, params, key))
        status, answer = await self._answer(method, path, params, key, headers)
        payload = json.dumps(answer).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"request-id", f"req_{len(self.calls)}".encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    async def _answer(
        self,
        method: str,
        path: str,
        params: dict[str, str],
        key: str | None,
        headers: dict[str, str],
    ) -> tuple[int, dict[str, Any]]:
        if headers.get("authorization") != f"Bearer {SECRET_KEY}":
            return 401, _error("invalid_request_error", "Invalid API Key provided.")
        if key is not None and key in self._in_flight:
            self.overlapping_keys.append(key)
            return 409, _error(
                "idempotency_error",
                "There is currently another in-progress request using this Idempotent Key.",
                "lock_timeout",
            )
        if key is not None and key in self._answers:
            return self._answers[key]
        if key is not None:
            self._in_flight.add(key)
        self.in_flight_max = max(self.in_flight_max, len(self._in_flight))
        try:
            if self.latency:
                await asyncio.sleep(self.latency)
            scripted = self.failures.get(path)
            if scripted:
                kind, value = scripted.pop(0)
                if kind == "slow":
                    # Done and kept under its key, but answered too late for the caller.
                    answer = self._route(method, path, params)
                    if key is not None:
                        self._answers[key] = answer
                    await asyncio.sleep(value)
                    return answer
                if kind == "hang":
                    await asyncio.sleep(value)
                    return 500, _error("api_error", "hung")
                # A failure is not stored under the key: Stripe lets a retry run anew.
                return int(value), _error("api_error", "Something went wrong on Stripe's end.")
            answer = self._route(method, path, params)
            if key is not None and answer[0] < 500:
                self._answers[key] = answer
            return answer
        finally:
            if key is not None:
                self._in_flight.discard(key)


def _error(kind: str, message: str, code: str | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"type": kind, "message": message}
    if code is not None:
        error["code"] = code
    return {"error": error}


@contextlib.asynccontextmanager
async def running_fake_stripe() -> AsyncIterator[FakeStripe]:
    fake = FakeStripe(free_port())
    async with serving(fake.app, fake.port):
        yield fake
