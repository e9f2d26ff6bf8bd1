"""A small keep-alive HTTP/1.1 client for the load generator.

The generator shares the machine's cores with the server and PostgreSQL, so every
CPU-millisecond it spends is one the server does not get. A connection is a persistent one,
carrying one request at a time; a request is prebuilt bytes, and a
response is read as a status line, the few headers that matter and a ``Content-Length``
body (chunked bodies are read too). ``HttpxConnection`` is the same interface over httpx,
kept to measure what the lean client saves (``--client httpx``).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol, cast

import httpx

TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    location: str | None
    body: bytes


class Connection(Protocol):
    async def send(
        self, method: str, path: str, headers: bytes, body: bytes | None
    ) -> Response: ...

    async def close(self) -> None: ...


def header_block(headers: dict[str, str]) -> bytes:
    """Header lines, each ending in CRLF, built once per client rather than per request."""
    return b"".join(f"{name}: {value}\r\n".encode() for name, value in headers.items())


def encode_request(
    method: str, path: str, host: bytes, headers: bytes, body: bytes | None
) -> bytes:
    start = b"%s %s HTTP/1.1\r\nHost: %s\r\n" % (method.encode(), path.encode(), host)
    if body is None:
        return start + headers + b"\r\n"
    return start + headers + b"Content-Length: %d\r\n\r\n" % len(body) + body


def parse_head(head: bytes) -> tuple[int, int | None, bool, bool, str | None]:
    """Status, Content-Length, chunked, connection-close and Location of a response head."""
    lines = head.split(b"\r\n")
    status_line = lines[0]
    if not status_line.startswith(b"HTTP/1."):
        raise ValueError(f"not an HTTP/1.x response: {status_line[:40]!r}")
    status = int(status_line[9:12])
    length: int | None = None
    chunked = False
    close = status_line.startswith(b"HTTP/1.0")
    location: str | None = None
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        lowered = name.strip().lower()
        if lowered == b"content-length":
            length = int(value)
        elif lowered == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif lowered == b"connection":
            close = value.strip().lower() == b"close"
        elif lowered == b"location":
            location = value.strip().decode()
    return status, length, chunked, close, location


class _Exchange(asyncio.Protocol):
    """The connection's side of asyncio: bytes in, one response at a time out.

    A protocol rather than asyncio's streams: a response is parsed from the bytes as they
    arrive, in the callback that receives them, and wakes its request once. Streams cost a
    wake-up per read (the head, then the body) and a timeout context per request, and this
    client's CPU is taken from the server it measures.
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._buffer = bytearray()
        self._waiter: asyncio.Future[Response] | None = None
        self._must_close = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio's interface without deriving from it.
        self.transport = cast(asyncio.Transport, transport)

    def request(self, data: bytes) -> asyncio.Future[Response]:
        assert self.transport is not None
        self._waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return self._waiter

    @property
    def must_close(self) -> bool:
        """The last response asked for the connection to be closed."""
        return self._must_close

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        self._complete(at_eof=False)

    def eof_received(self) -> bool:
        self._complete(at_eof=True)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._complete(at_eof=True)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc or asyncio.IncompleteReadError(bytes(self._buffer), None))

    def _complete(self, *, at_eof: bool) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        try:
            parsed = _parse(self._buffer, at_eof=at_eof)
        except ValueError as exc:
            # Not HTTP: the request fails now, and the connection is of no further use.
            self._must_close = True
            waiter.set_exception(exc)
            if self.transport is not None:
                self.transport.close()
            return
        if parsed is None:
            return
        response, used, close = parsed
        del self._buffer[:used]
        self._must_close = close
        waiter.set_result(response)


def _parse(buffer: bytearray, *, at_eof: bool) -> tuple[Response, int, bool] | None:
    """A whole response at the start of ``buffer``, the bytes it took and whether the
    connection must close after it; None while it is incomplete. A response that cannot
    complete raises ``ValueError``."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    status, length, chunked, close, location = parse_head(bytes(buffer[:end]))
    start = end + 4
    if chunked:
        chunks = _chunked(buffer, start)
        if chunks is None:
            return None
        body, used = chunks
        return Response(status, location, body), used, close
    if length is not None:
        if len(buffer) < start + length:
            return None
        return (
            Response(status, location, bytes(buffer[start : start + length])),
            start + length,
            close,
        )
    if not at_eof:
        return None  # the body runs to the end of the connection
    return Response(status, location, bytes(buffer[start:])), len(buffer), True


def _chunked(buffer: bytearray, position: int) -> tuple[bytes, int] | None:
    parts: list[bytes] = []
    while True:
        line_end = buffer.find(b"\r\n", position)
        if line_end < 0:
            return None
        size = int(bytes(buffer[position:line_end]).split(b";", 1)[0], 16)
        position = line_end + 2
        if size == 0:
            # Trailers, if any, end with an empty line.
            while True:
                line_end = buffer.find(b"\r\n", position)
                if line_end < 0:
                    return None
                if line_end == position:
                    return b"".join(parts), line_end + 2
                position = line_end + 2
        if len(buffer) < position + size + 2:
            return None
        parts.append(bytes(buffer[position : position + size]))
        position += size + 2


class RawConnection:
    """One persistent connection; reconnects after the server closes it or on an error."""

    def __init__(self, host: str, port: int, timeout_s: float = TIMEOUT_S) -> None:
        self._host = host
        self._port = port
        self._host_header = f"{host}:{port}".encode()
        self._timeout_s = timeout_s
        self._exchange_with: _Exchange | None = None

    async def send(self, method: str, path: str, headers: bytes, body: bytes | None) -> Response:
        request = encode_request(method, path, self._host_header, headers, body)
        deadline = asyncio.get_running_loop().time() + self._timeout_s
        try:
            return await self._exchange(request, deadline)
        except BaseException:
            await self.close()
            raise

    async def _exchange(self, request: bytes, deadline: float) -> Response:
        current = self._exchange_with
        reused = current is not None and not current.closed
        try:
            return await self._exchange_once(request, deadline)
        except (asyncio.IncompleteReadError, ConnectionResetError, BrokenPipeError) as exc:
            if not reused or (isinstance(exc, asyncio.IncompleteReadError) and exc.partial):
                raise
            # The server closed the connection while it was idle (its keep-alive timeout),
            # before reading this request: send it again on a new one. The request is the
            # same bytes, Idempotency-Key included, so even a request that did arrive is
            # only replayed.
            await self.close()
            return await self._exchange_once(request, deadline)

    async def _exchange_once(self, request: bytes, deadline: float) -> Response:
        """One attempt; connecting and waiting for the answer share the request's deadline."""
        loop = asyncio.get_running_loop()
        exchange = self._exchange_with
        if exchange is None or exchange.closed:
            async with asyncio.timeout_at(deadline):
                _, exchange = await loop.create_connection(_Exchange, self._host, self._port)
            self._exchange_with = exchange
        waiter = exchange.request(request)
        timer = loop.call_at(deadline, _expire, waiter, self._timeout_s)
        try:
            response = await waiter
        finally:
            timer.cancel()
        if exchange.must_close:
            await self.close()
        return response

    async def close(self) -> None:
        exchange, self._exchange_with = self._exchange_with, None
        if exchange is not None and exchange.transport is not None:
            exchange.transport.close()


def _expire(waiter: asyncio.Future[Response], after_s: float) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError(f"no response within {after_s:g} s"))


class HttpxConnection:
    """The same interface over an httpx client limited to one connection."""

    def __init__(self, host: str, port: int, timeout_s: float = TIMEOUT_S) -> None:
        self._client = httpx.AsyncClient(
            base_url=f"http://{host}:{port}",
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
            timeout=timeout_s,
        )

    async def send(self, method: str, path: str, headers: bytes, body: bytes | None) -> Response:
        parsed: dict[str, str] = {}
        for line in headers.decode().split("\r\n"):
            if line:
                name, _, value = line.partition(":")
                parsed[name] = value.strip()
        response = await self._client.request(method, path, headers=parsed, content=body)
        return Response(response.status_code, response.headers.get("location"), response.content)

    async def close(self) -> None:
        await self._client.aclose()


def connect(kind: str, host: str, port: int) -> Connection:
    if kind == "raw":
        return RawConnection(host, port)
    if kind == "httpx":
        return HttpxConnection(host, port)
    raise ValueError(f"unknown client {kind!r}: raw or httpx")
