"""Posting webhooks over HTTP to addresses checked against SSRF (see
`stockflow.webhooks.addresses`).

The request goes to the checked IP address itself, with the URL's host name in ``Host``
and, for https, as the TLS server name (SNI), so the certificate is still verified for
the name. Connections are pooled per host name: a connection opened and verified for one
name is never reused for another name that happens to share its address. Redirects are
not followed (a 3xx is a failed attempt), proxies from the environment are not used, and
every attempt is bounded by a timeout.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import httpx

from stockflow import __version__
from stockflow.webhooks import addresses
from stockflow.webhooks.addresses import Resolver, UnsafeUrl

_MAX_CLIENTS = 256
USER_AGENT = f"Stockflow-Webhooks/{__version__}"


@dataclass(frozen=True, slots=True)
class Reply:
    """What one attempt got: a status code, or an error when nothing usable came back."""

    status_code: int | None
    retry_after: str | None
    error: str | None
    latency_ms: int
    permanent: bool = False
    """Trying again cannot help (the receiver no longer takes deliveries): dead at once."""


class WebhookSender(Protocol):
    async def post(self, url: str, *, body: str, headers: dict[str, str]) -> Reply: ...

    async def aclose(self) -> None: ...


class HttpWebhookSender:
    def __init__(
        self,
        *,
        timeout_seconds: float,
        allow_private: bool,
        resolver: Resolver = addresses.system_resolver,
    ) -> None:
        self._seconds = timeout_seconds
        self._timeout = httpx.Timeout(timeout_seconds)
        self._allow_private = allow_private
        self._resolver = resolver
        self._clients: OrderedDict[tuple[str, str], httpx.AsyncClient] = OrderedDict()
        self._closing: set[asyncio.Task[None]] = set()

    def _client(self, scheme: str, host: str) -> httpx.AsyncClient:
        key = (scheme, host)
        client = self._clients.get(key)
        if client is None:
            client = httpx.AsyncClient(
                timeout=self._timeout,
                follow_redirects=False,
                trust_env=False,
                headers={"user-agent": USER_AGENT},
                # No cap here: the relay bounds what is in flight, per endpoint and in all,
                # and a cap shared by endpoints on one host would let one starve another.
                limits=httpx.Limits(max_connections=None, max_keepalive_connections=4),
            )
            self._clients[key] = client
            if len(self._clients) > _MAX_CLIENTS:
                # The least recently used host's pool is closed in the background.
                _, evicted = self._clients.popitem(last=False)
                closing = asyncio.create_task(evicted.aclose())
                self._closing.add(closing)
                closing.add_done_callback(self._closing.discard)
        else:
            self._clients.move_to_end(key)
        return client

    async def post(self, url: str, *, body: str, headers: dict[str, str]) -> Reply:
        started = time.monotonic()

        def elapsed() -> int:
            return int((time.monotonic() - started) * 1000)

        try:
            # One deadline for the whole attempt, name resolution included: httpx's own
            # timeouts bound each read, and a receiver trickling bytes would outlive the
            # lease (and another worker would send the same delivery meanwhile).
            async with asyncio.timeout(self._seconds):
                return await self._post(url, body, headers, elapsed)
        except TimeoutError:
            return Reply(None, None, f"timed out after {self._seconds} s", elapsed())

    async def _post(
        self, url: str, body: str, headers: dict[str, str], elapsed: Callable[[], int]
    ) -> Reply:
        try:
            parsed = addresses.parse(url, allow_private=self._allow_private)
            target = await addresses.resolve(
                parsed, allow_private=self._allow_private, resolver=self._resolver
            )
        except UnsafeUrl as exc:
            return Reply(None, None, f"refused: {exc}", elapsed())
        host = parsed.raw_host.decode("ascii")
        extensions = {"sni_hostname": host} if parsed.scheme == "https" else {}
        try:
            # Streamed and never read: only the status and headers matter, and a receiver
            # answering with a huge body costs nothing.
            async with self._client(parsed.scheme, host).stream(
                "POST",
                parsed.copy_with(host=target.address),
                content=body.encode(),
                headers={**headers, "host": parsed.netloc.decode("ascii")},
                extensions=extensions,
            ) as response:
                status, retry_after = response.status_code, response.headers.get("retry-after")
        except httpx.TimeoutException:
            return Reply(None, None, f"timed out after {self._seconds} s", elapsed())
        except httpx.HTTPError as exc:
            return Reply(None, None, f"{type(exc).__name__}: {exc}"[:500], elapsed())
        return Reply(status, retry_after, None, elapsed())

    async def aclose(self) -> None:
        clients = list(self._clients.values())
        self._clients.clear()
        for client in clients:
            await client.aclose()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
