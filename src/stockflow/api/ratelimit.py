"""Rate limits: one budget per API key, one per client address for calls without a key.

The check runs before anything else touches the database, so a client over its budget
costs one counter increment and nothing more. A well-formed key (its prefix and checksum
hold) is counted by a digest of the key itself: the key's id is only known after the
database lookup the limit is there to spare. Anything else (no key, a malformed one) is
counted against the client's address, so sending random strings as keys buys no extra
budget. Behind a proxy, list the proxy's address in ``FORWARDED_ALLOW_IPS`` so that the
address is the client's (from ``X-Forwarded-For``) rather than the proxy's.

Counters live in the process (the default) or in Redis, where every instance of the API
shares them. The limiter fails open: if Redis cannot be reached, requests are served and
the failure is logged, because a rate limit protects the service and must not become the
reason it is down.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass

from limits import RateLimitItem
from limits.aio.storage import Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.storage import storage_from_string
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stockflow.api.problems import problem_response
from stockflow.auth.keys import is_well_formed
from stockflow.config import parse_limit, storage_uri
from stockflow.errors import RateLimited, problem_type_uri
from stockflow.observability import metrics
from stockflow.observability.logging import get_logger

log = get_logger(__name__)
# A failing store is logged at most this often, not once per request.
_FAILURE_LOG_SECONDS = 30.0
# Addresses blocked at once before the expired ones are swept out.
_MAX_BLOCKED = 10_000


@dataclass(frozen=True, slots=True)
class Policy:
    """A named limit, as the ``RateLimit-Policy`` header names it."""

    name: str
    item: RateLimitItem

    @property
    def header(self) -> str:
        return f'"{self.name}";q={self.item.amount};w={self.item.get_expiry()}'


class RateLimiter:
    """The limits of one API process over one store."""

    def __init__(self, *, per_key: str, per_address: str, storage: str) -> None:
        self.per_key = Policy("per-key", parse_limit(per_key))
        self.per_address = Policy("per-address", parse_limit(per_address))
        store = storage_from_string(storage_uri(storage))
        assert isinstance(store, Storage)
        self._store = store
        self._limiter = SlidingWindowCounterRateLimiter(store)
        self._failure_logged_at = -math.inf

    def identify(self, scope: Scope) -> tuple[Policy, str]:
        """The policy that applies to the request, and whose budget it spends."""
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, token = value.decode("latin-1").partition(" ")
                token = token.strip()
                if scheme.lower() == "bearer" and is_well_formed(token):
                    digest = hashlib.sha256(token.encode("ascii")).hexdigest()[:32]
                    return self.per_key, digest
                break
        return self.per_address, self.address(scope)

    async def over_limit(self, policy: Policy, identity: str) -> int | None:
        """Spends one request of ``identity``'s budget: None while within it, else the
        seconds until a request may succeed again."""
        try:
            if await self._limiter.hit(policy.item, policy.name, identity):
                return None
            return await self._wait(policy, identity)
        except Exception as exc:
            self._failed(exc)
            return None

    async def spend_failure(self, address: str) -> int | None:
        """Spends one request of the address's budget for a key that failed: None while
        some budget is left, else the seconds until the window ends."""
        policy = self.per_address
        try:
            if await self._limiter.hit(policy.item, policy.name, address) and (
                await self._limiter.test(policy.item, policy.name, address)
            ):
                return None
            return await self._wait(policy, address)
        except Exception as exc:
            self._failed(exc)
            return None

    async def _wait(self, policy: Policy, identity: str) -> int:
        stats = await self._limiter.get_window_stats(policy.item, policy.name, identity)
        return max(1, math.ceil(stats.reset_time - time.time()))

    def _failed(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._failure_logged_at >= _FAILURE_LOG_SECONDS:
            self._failure_logged_at = now
            log.error("rate_limit_storage_failed", error=repr(exc))

    def address(self, scope: Scope) -> str:
        client = scope.get("client")
        return client[0] if client else "unknown"


class RateLimitMiddleware:
    """Refuses a request over its budget with a 429 problem, ``Retry-After`` and the IETF
    ``RateLimit`` and ``RateLimit-Policy`` fields. Health probes and the metrics scrape are
    never limited: the monitoring must see a service that is busy refusing clients.

    A key that fails authentication also spends its address's budget. Once an address has
    spent it that way, this process refuses every keyed request from it until the window
    ends, without asking the store: guessing keys, each with a valid checksum and so a
    budget of its own, stops after as many guesses as one address may make anonymously."""

    def __init__(self, app: ASGIApp, *, limiter: RateLimiter) -> None:
        self.app = app
        self.limiter = limiter
        self._blocked: dict[str, float] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in metrics.PROBE_PATHS:
            await self.app(scope, receive, send)
            return
        limiter = self.limiter
        policy, identity = limiter.identify(scope)
        if policy is limiter.per_key:
            address = limiter.address(scope)
            blocked_until = self._blocked.get(address)
            if blocked_until is not None:
                wait = math.ceil(blocked_until - time.monotonic())
                if wait > 0:
                    await _refuse(limiter.per_address, wait, scope, receive, send)
                    return
                del self._blocked[address]
        retry_after = await limiter.over_limit(policy, identity)
        if retry_after is not None:
            await _refuse(policy, retry_after, scope, receive, send)
            return
        if policy is not limiter.per_key:
            await self.app(scope, receive, send)
            return
        refused_key = False

        async def watch(message: Message) -> None:
            nonlocal refused_key
            if message["type"] == "http.response.start" and message["status"] == 401:
                refused_key = True
            await send(message)

        await self.app(scope, receive, watch)
        if refused_key:
            failed = await limiter.spend_failure(address)
            if failed is not None:
                now = time.monotonic()
                if len(self._blocked) >= _MAX_BLOCKED:
                    self._blocked = {a: t for a, t in self._blocked.items() if t > now}
                self._blocked[address] = now + failed


async def _refuse(
    policy: Policy, retry_after: int, scope: Scope, receive: Receive, send: Send
) -> None:
    metrics.RATE_LIMITED.labels(policy=policy.name).inc()
    response = problem_response(
        status=RateLimited.status,
        type_=problem_type_uri(RateLimited.slug),
        title=RateLimited.title,
        detail=(
            f"More than {policy.item.amount} requests in {policy.item.get_expiry()} s "
            f"({policy.name}); retry in {retry_after} s."
        ),
        headers={
            "Retry-After": str(retry_after),
            "RateLimit-Policy": policy.header,
            "RateLimit": f'"{policy.name}";r=0;t={retry_after}',
        },
    )
    await response(scope, receive, send)
