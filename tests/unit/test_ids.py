from __future__ import annotations

import base64
import re

import pytest

from stockflow.db.pagination import decode_cursor, encode_cursor
from stockflow.errors import InvalidCursor
from stockflow.ids import new_id


def test_ids_carry_their_prefix_and_a_ulid_body() -> None:
    assert re.fullmatch(r"ord_[0-9A-HJKMNP-TV-Z]{26}", new_id("ord"))


def test_ids_sort_by_creation_time() -> None:
    earlier = [new_id("x", now_ms=1_700_000_000_000 + i) for i in range(50)]
    assert earlier == sorted(earlier)
    assert new_id("x", now_ms=1_000) < new_id("x", now_ms=2_000)


def test_ids_are_unique_within_one_millisecond() -> None:
    ids = {new_id("x", now_ms=5) for _ in range(1000)}
    assert len(ids) == 1000


def test_cursor_round_trip_is_opaque() -> None:
    identifier = new_id("prod")
    cursor = encode_cursor(identifier)
    assert identifier not in cursor
    assert decode_cursor(cursor) == identifier


@pytest.mark.parametrize("cursor", ["", "!!!", "bm90LWFuLWlk", "a" * 7])
def test_foreign_cursors_are_refused(cursor: str) -> None:
    with pytest.raises(InvalidCursor):
        decode_cursor(cursor)


def test_ids_made_in_a_row_are_strictly_increasing() -> None:
    ids = [new_id("mov") for _ in range(2000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


def test_the_body_is_a_ulid_in_crockford_base32() -> None:
    # The ULID specification's example: this millisecond encodes as 01ARZ3NDEK.
    assert new_id("x", now_ms=1_469_922_850_259).startswith("x_01ARZ3NDEK")
    assert new_id("x", now_ms=0).startswith("x_0000000000")
    assert new_id("x", now_ms=(1 << 48) - 1).startswith("x_7ZZZZZZZZZ")


@pytest.mark.parametrize("random_part", [0, 1, 0x5A5A5A5A5A5A5A5A5A5A, (1 << 80) - 1])
def test_the_body_is_the_standard_base32_of_the_value_in_crockfords_alphabet(
    monkeypatch: pytest.MonkeyPatch, random_part: int
) -> None:
    monkeypatch.setattr("stockflow.ids.secrets.randbits", lambda bits: random_part)
    millis = 1_700_000_000_123
    value = (millis << 80) | random_part
    # RFC 4648 base32 of the value behind two zero bits, its alphabet swapped for Crockford's.
    rfc4648 = base64.b32encode((value << 6).to_bytes(17, "big")).decode()[:26]
    crockford = rfc4648.translate(
        str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", "0123456789ABCDEFGHJKMNPQRSTVWXYZ")
    )
    assert new_id("x", now_ms=millis) == f"x_{crockford}"
