"""Stripe, through its official SDK: the only module that knows how to talk to it.

Built from settings when payments are `stripe`, never at import. The SDK itself retries
nothing (``max_network_retries=0``): a call that fails is reported at once, and whoever
made it retries later with the same idempotency key, so Stripe answers a retry with what
it did the first time. Every call has one deadline as a whole
(``STOCKFLOW_STRIPE_TIMEOUT_SECONDS``), whatever its phases take.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import stripe


class ProviderUnavailable(Exception):
    """Stripe could not be reached, timed out, or failed on its side (5xx, 409 lock,
    rate limit): nothing is known to have happened, and the same call may be retried."""


class ProviderRefused(Exception):
    """Stripe refused the request itself (4xx): retrying the same call will not help."""

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class InvalidStripeSignature(Exception):
    """A webhook's ``Stripe-Signature`` is missing, wrong or too old, or its body is not
    an event."""


@dataclass(frozen=True, slots=True)
class Intent:
    """What Stockflow needs of a PaymentIntent."""

    id: str
    status: str
    amount: int
    amount_received: int
    currency: str
    client_secret: str | None
    order_id: str | None
    failure_message: str | None
    created: int


@dataclass(frozen=True, slots=True)
class StripeRefund:
    id: str
    status: str
    amount: int


@dataclass(frozen=True, slots=True)
class StripeEvent:
    id: str
    type: str
    object: dict[str, Any]


def _field(obj: Any, name: str) -> Any:
    return getattr(obj, name, None)


def _intent(obj: Any) -> Intent:
    metadata = _field(obj, "metadata")
    order_id = metadata["order_id"] if metadata is not None and "order_id" in metadata else None
    error = _field(obj, "last_payment_error")
    return Intent(
        id=obj.id,
        status=obj.status,
        amount=int(obj.amount),
        amount_received=int(_field(obj, "amount_received") or 0),
        currency=str(obj.currency).upper(),
        client_secret=_field(obj, "client_secret"),
        order_id=order_id,
        failure_message=_field(error, "message") if error is not None else None,
        created=int(_field(obj, "created") or 0),
    )


def _translated(exc: stripe.StripeError) -> Exception:
    if isinstance(exc, stripe.APIConnectionError | stripe.RateLimitError):
        return ProviderUnavailable(str(exc) or type(exc).__name__)
    if isinstance(
        exc, stripe.AuthenticationError | stripe.PermissionError | stripe.IdempotencyError
    ):
        # The key or the account, not this request: nothing about the payment is decided,
        # and the same call works once the operator has fixed it.
        return ProviderUnavailable(f"Stripe refused the credentials: {exc.user_message}")
    status = exc.http_status or 0
    if isinstance(exc, stripe.APIError) or status >= 500 or status == 409:
        return ProviderUnavailable(f"Stripe answered {status or 'an error'}: {exc.user_message}")
    code = _field(exc.error, "code") if exc.error is not None else None
    return ProviderRefused(exc.user_message or str(exc), code=code)


class StripeGateway:
    """Async calls to Stripe for one event loop (the SDK's HTTP client is bound to it)."""

    def __init__(
        self,
        *,
        secret_key: str,
        webhook_secret: str,
        api_base: str,
        timeout_seconds: float,
    ) -> None:
        # No telemetry: it writes a file under the home directory and reports request
        # timings to Stripe.
        stripe.enable_telemetry = False
        self._http = stripe.HTTPXClient(timeout=timeout_seconds)
        self._client = stripe.StripeClient(
            secret_key,
            base_addresses={"api": api_base.rstrip("/")},
            http_client=self._http,
            max_network_retries=0,
        )
        self._webhook_secret = webhook_secret
        self._deadline = timeout_seconds

    @contextlib.asynccontextmanager
    async def _bounded(self) -> AsyncIterator[None]:
        """One deadline for the whole call: httpx's timeout bounds each phase (connect,
        each read) on its own, so a slow answer could otherwise outlast it, and with it
        the order's payment lease."""
        try:
            async with asyncio.timeout(self._deadline):
                yield
        except TimeoutError as exc:
            raise ProviderUnavailable(f"Stripe did not answer within {self._deadline} s") from exc
        except stripe.StripeError as exc:
            raise _translated(exc) from exc

    async def aclose(self) -> None:
        await self._http.close_async()  # type: ignore[no-untyped-call]

    async def create_intent(
        self, *, amount: int, currency: str, order_id: str, idempotency_key: str
    ) -> Intent:
        """A PaymentIntent for the order, with automatic payment methods (cards and the
        wallets enabled on the account, such as Google Pay and Apple Pay)."""
        async with self._bounded():
            created = await self._client.v1.payment_intents.create_async(
                params={
                    "amount": amount,
                    "currency": currency.lower(),
                    "metadata": {"order_id": order_id},
                    "automatic_payment_methods": {"enabled": True},
                },
                options={"idempotency_key": idempotency_key},
            )
        return _intent(created)

    async def retrieve_intent(self, intent_id: str) -> Intent:
        async with self._bounded():
            return _intent(await self._client.v1.payment_intents.retrieve_async(intent_id))

    async def cancel_intent(self, intent_id: str) -> Intent:
        async with self._bounded():
            return _intent(await self._client.v1.payment_intents.cancel_async(intent_id))

    async def refund(
        self, *, intent_id: str, amount: int, idempotency_key: str, refund_id: str
    ) -> StripeRefund:
        async with self._bounded():
            made = await self._client.v1.refunds.create_async(
                params={
                    "payment_intent": intent_id,
                    "amount": amount,
                    "metadata": {"refund_id": refund_id},
                },
                options={"idempotency_key": idempotency_key},
            )
        return StripeRefund(id=made.id, status=made.status or "pending", amount=int(made.amount))

    async def intents_since(self, created_since: int) -> AsyncIterator[Intent]:
        """Every PaymentIntent created at or after the Unix time, newest first."""
        try:
            page = await self._client.v1.payment_intents.list_async(
                params={"created": {"gte": created_since}, "limit": 100}
            )
            async for obj in page.auto_paging_iter():
                yield _intent(obj)
        except stripe.StripeError as exc:
            raise _translated(exc) from exc

    def verify_event(self, payload: bytes, signature: str | None) -> StripeEvent:
        """The event in a webhook's body, once its signature is checked against the raw
        bytes (at most five minutes old)."""
        if not signature:
            raise InvalidStripeSignature("no Stripe-Signature header")
        try:
            event = self._client.construct_event(
                payload, signature, self._webhook_secret, tolerance=300
            )
        except (stripe.SignatureVerificationError, ValueError) as exc:
            raise InvalidStripeSignature(str(exc)) from exc
        data = _field(event, "data")
        obj = _field(data, "object") if data is not None else None
        if not isinstance(_field(event, "id"), str) or not isinstance(_field(event, "type"), str):
            raise InvalidStripeSignature("not a Stripe event")
        return StripeEvent(
            id=event.id, type=event.type, object=obj.to_dict() if obj is not None else {}
        )
