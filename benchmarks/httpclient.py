"""A small keep-alive HTTP/1.1 client for the load generator.

The generator shares the machine's cores with the server and PostgreSQL, so every
CPU-millisecond it spends is one the server does not get. A connection is a persistent one
over asyncio streams, carrying one request at a time; a request is prebuilt bytes, and a
response is read as a status line, the few headers that matter and a ``Content-Length``
body (chunked bodies are read too). ``HttpxConnection`` is the same interface over httpx,
kept to measure what the lean client saves (``--client httpx``).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Protocol

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


class RawConnection:
    """One persistent connection; reconnects after the server closes it or on an error."""

    def __init__(self, host: str, port: int, timeout_s: float = TIMEOUT_S) -> None:
        self._host = host
        self._port = port
        self._host_header = f"{host}:{port}".encode()
        self._timeout_s = timeout_s
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def send(self, method: str, path: str, headers: bytes, body: bytes | None) -> Response:
        request = encode_request(method, path, self._host_header, headers, body)
        try:
            async with asyncio.timeout(self._timeout_s):
                return await self._exchange(request)
        except BaseException:
            await self.close()
            raise

    async def _exchange(self, request: bytes) -> Response:
        reused = self._writer is not None
        try:
            return await self._exchange_once(request)
        except (asyncio.IncompleteReadError, ConnectionResetError, BrokenPipeError) as exc:
            if not reused or (isinstance(exc, asyncio.IncompleteReadError) and exc.partial):
                raise
            # The server closed the connection while it was idle (its keep-alive timeout),
            # before reading this request: send it again on a new one. The request is the
            # same bytes, Idempotency-Key included, so even a request that did arrive is
            # only replayed.
            await self.close()
            return await self._exchange_once(request)

    async def _exchange_once(self, request: bytes) -> Response:
        if self._writer is None or self._reader is None:
            self._reader, self._writer = await asyncio.open_connection(self._host, self._port)
        reader, writer = self._reader, self._writer
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        status, length, chunked, close, location = parse_head(head[:-4])
        if chunked:
            body = await _read_chunked(reader)
        elif length is not None:
            body = await reader.readexactly(length) if length else b""
        else:
            body = await reader.read()
            close = True
        if close:
            await self.close()
        return Response(status, location, body)

    async def close(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.split(b";", 1)[0], 16)
        if size == 0:
            # Trailers, if any, end with an empty line.
            while (await reader.readuntil(b"\r\n")) != b"\r\n":
                pass
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)


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
