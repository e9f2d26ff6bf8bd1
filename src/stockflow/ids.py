"""Opaque, time-sortable identifiers with a type prefix (``prod_01J…``).

The body is a ULID (48-bit millisecond time + 80 random bits, Crockford base32), so ids
sort by creation time, which lets lists page with an id cursor and show newest first.
Within one process ids are also strictly increasing inside the same millisecond (the
random part of the previous id plus one), so rows written in one transaction keep their
order.
"""

from __future__ import annotations

import base64
import secrets
import threading
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
# Base32 in C, then RFC 4648's alphabet swapped for Crockford's: the hot path makes
# several ids per order.
_FROM_RFC4648 = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", _ALPHABET)
_RANDOM_BITS = 80
_lock = threading.Lock()
_last = (0, 0)


def _next_value() -> int:
    global _last
    with _lock:
        now = int(time.time() * 1000)
        last_millis, last_random = _last
        if now <= last_millis and last_random + 1 < 1 << _RANDOM_BITS:
            now, random_part = last_millis, last_random + 1
        else:
            random_part = secrets.randbits(_RANDOM_BITS)
        _last = (now, random_part)
        return (now << _RANDOM_BITS) | random_part


def new_id(prefix: str, *, now_ms: int | None = None) -> str:
    if now_ms is None:
        value = _next_value()
    else:
        value = (now_ms << _RANDOM_BITS) | secrets.randbits(_RANDOM_BITS)
    # 26 symbols are 130 bits: the 128-bit value behind two zero bits, padded on the right
    # to whole bytes.
    symbols = base64.b32encode((value << 6).to_bytes(17, "big")).decode("ascii")[:26]
    return f"{prefix}_{symbols.translate(_FROM_RFC4648)}"
