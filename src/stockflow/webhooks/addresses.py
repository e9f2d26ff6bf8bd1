"""Where a webhook may be sent (no SSRF): https only, and never to an address that is not
globally routable (loopback, private, link-local, unique-local, cloud metadata, ...).

The host is resolved and every address checked at registration; at send time it is
resolved and checked again, and the request connects to the very address that was checked,
so a name that re-resolves to an internal address in between (DNS rebinding) gets nowhere.
Development mode (a setting, refused in production) allows http and private addresses.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]
"""(host, port) -> the addresses it resolves to, as text."""

MAX_URL_LENGTH = 2048
RESOLVE_SECONDS = 3.0
"""A name lookup is bounded: registration holds its transaction open meanwhile."""


class UnsafeUrl(ValueError):
    """The URL may not receive webhooks; the message says why, for the API's 422."""


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


# Ranges refused on top of what the ``ipaddress`` module calls not global (its lists vary
# with the Python version): the IETF protocol assignments, and deprecated site-local.
_ALSO_REFUSED = tuple(
    ipaddress.ip_network(network)
    for network in ("192.0.0.0/24", "198.18.0.0/15", "100.64.0.0/10", "fec0::/10")
)
# IPv6 ranges that carry an IPv4 address in their last 32 bits, reaching it through a
# translator (NAT64, SIIT) or as the deprecated IPv4-compatible form.
_EMBEDDING_IPV4 = tuple(
    ipaddress.ip_network(network)
    for network in ("64:ff9b::/96", "64:ff9b:1::/48", "::ffff:0:0:0/96", "::/96")
)


def is_public(address: IPAddress) -> bool:
    """Globally routable, including what an IPv6 address that embeds an IPv4 one (mapped,
    translated, 6to4, Teredo) hides."""
    if isinstance(address, ipaddress.IPv6Address):
        hidden: list[ipaddress.IPv4Address | None] = [address.ipv4_mapped, address.sixtofour]
        if address.teredo is not None:
            hidden.extend(address.teredo)
        if any(network.version == 6 and address in network for network in _EMBEDDING_IPV4):
            hidden.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
        if any(inner is not None and not is_public(inner) for inner in hidden):
            return False
    if any(address.version == network.version and address in network for network in _ALSO_REFUSED):
        return False
    return address.is_global and not address.is_multicast


def parse(url: str, *, allow_private: bool) -> httpx.URL:
    if len(url) > MAX_URL_LENGTH:
        raise UnsafeUrl(f"must be at most {MAX_URL_LENGTH} characters")
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise UnsafeUrl(f"is not a valid URL ({exc})") from None
    allowed = ("https", "http") if allow_private else ("https",)
    if parsed.scheme not in allowed:
        raise UnsafeUrl("must be an https:// URL")
    if not parsed.host:
        raise UnsafeUrl("must name a host")
    if parsed.userinfo:
        raise UnsafeUrl("must not carry a user name or password")
    if parsed.fragment:
        raise UnsafeUrl("must not have a #fragment")
    return parsed


@dataclass(frozen=True, slots=True)
class Target:
    """A URL and the checked address to connect to for it."""

    url: httpx.URL
    address: str


async def resolve(url: httpx.URL, *, allow_private: bool, resolver: Resolver) -> Target:
    """The address to connect to for ``url``, after checking every address its host
    resolves to: one unsafe answer refuses the whole name."""
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        async with asyncio.timeout(RESOLVE_SECONDS):
            answers = await resolver(url.raw_host.decode("ascii"), port)
    except TimeoutError:
        raise UnsafeUrl(f"host {url.host} did not resolve within {RESOLVE_SECONDS} s") from None
    except (OSError, UnicodeError) as exc:
        raise UnsafeUrl(f"host {url.host} does not resolve ({exc})") from None
    if not answers:
        raise UnsafeUrl(f"host {url.host} does not resolve")
    addresses = [ipaddress.ip_address(answer.split("%", 1)[0]) for answer in answers]
    if not allow_private:
        unsafe = [str(address) for address in addresses if not is_public(address)]
        if unsafe:
            raise UnsafeUrl(
                f"host {url.host} resolves to an address that is not public ({unsafe[0]})"
            )
    return Target(url, str(addresses[0]))


async def check(url: str, *, allow_private: bool, resolver: Resolver) -> str:
    """Registration's check: the URL normalised, or `UnsafeUrl`."""
    parsed = parse(url, allow_private=allow_private)
    await resolve(parsed, allow_private=allow_private, resolver=resolver)
    return str(parsed)
