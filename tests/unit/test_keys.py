"""The API key format, without a database: prefix, length, checksum, hash, display prefix."""

from __future__ import annotations

import hashlib
import re
import string

import pytest

from stockflow.auth.keys import (
    DISPLAY_PREFIX_LENGTH,
    KEY_LENGTH,
    KEY_PREFIX,
    display_prefix,
    generate_key,
    hash_key,
    is_well_formed,
)

BASE62 = string.digits + string.ascii_letters
# Documented: ``sf_`` + 32 random base62 characters + a 6-character checksum.
DOCUMENTED_LENGTH = 3 + 32 + 6
CHECKSUM_START = DOCUMENTED_LENGTH - 6
KEY_SHAPE = re.compile(r"^sf_[0-9A-Za-z]{38}$")


def _replace(key: str, position: int, char: str) -> str:
    return key[:position] + char + key[position + 1 :]


def _another_char(char: str, shift: int = 1) -> str:
    return BASE62[(BASE62.index(char) + shift) % len(BASE62)]


def test_constants_match_the_documented_format() -> None:
    assert KEY_PREFIX == "sf_"
    assert KEY_LENGTH == DOCUMENTED_LENGTH == 41


def test_generated_key_has_the_documented_shape() -> None:
    key = generate_key()
    assert key.startswith("sf_")
    assert len(key) == DOCUMENTED_LENGTH
    assert KEY_SHAPE.match(key), key
    assert is_well_formed(key)


def test_generated_keys_are_all_well_formed_and_distinct() -> None:
    generated = [generate_key() for _ in range(300)]
    assert all(is_well_formed(key) for key in generated)
    assert len(set(generated)) == len(generated)
    # The random part really is random: every position varies across 300 keys.
    for position in range(3, CHECKSUM_START):
        assert len({key[position] for key in generated}) > 1, position


def test_flipping_any_single_character_of_the_body_breaks_the_checksum() -> None:
    for _ in range(5):
        key = generate_key()
        for position in range(len(KEY_PREFIX), len(key)):
            for shift in (1, 7, 31, 61):
                tampered = _replace(key, position, _another_char(key[position], shift))
                assert tampered != key
                assert not is_well_formed(tampered), (key, position, shift)


@pytest.mark.parametrize("position", [3, 10, 20, 34, CHECKSUM_START, DOCUMENTED_LENGTH - 1])
def test_flipping_one_character_to_a_non_base62_character_is_refused(position: int) -> None:
    key = generate_key()
    for char in "-_+/=. \x00é":
        assert not is_well_formed(_replace(key, position, char))


def test_swapping_the_checksum_of_two_keys_is_refused() -> None:
    first, second = generate_key(), generate_key()
    assert not is_well_formed(first[:CHECKSUM_START] + second[CHECKSUM_START:])


@pytest.mark.parametrize(
    "candidate",
    [
        "",
        "sf_",
        "Bearer sf_",
        "not-a-key",
        "sk_live_0123456789abcdefghijklmnopqrstuvwxyzABCD",
    ],
)
def test_obviously_malformed_strings_are_refused(candidate: str) -> None:
    assert not is_well_formed(candidate)


def test_wrong_prefix_length_or_case_is_refused() -> None:
    key = generate_key()
    assert not is_well_formed("SF_" + key[3:])
    assert not is_well_formed("sk_" + key[3:])
    assert not is_well_formed("sf-" + key[3:])
    assert not is_well_formed(key[:-1])
    assert not is_well_formed(key + "0")
    assert not is_well_formed(key[1:])
    assert not is_well_formed(" " + key)
    assert not is_well_formed(key + "\n")


def test_hash_is_sha256_hex_of_the_whole_key() -> None:
    key = generate_key()
    digest = hash_key(key)
    assert digest == hashlib.sha256(key.encode("ascii")).hexdigest()
    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    assert key not in digest
    assert hash_key(key) == digest  # deterministic


def test_hash_differs_per_key() -> None:
    generated = [generate_key() for _ in range(100)]
    assert len({hash_key(key) for key in generated}) == len(generated)


def test_display_prefix_is_the_first_characters_only() -> None:
    key = generate_key()
    prefix = display_prefix(key)
    assert DISPLAY_PREFIX_LENGTH == 10
    assert prefix == key[:10]
    assert prefix.startswith("sf_")
    # It shows too little to authenticate with, and never the checksum.
    assert len(prefix) < CHECKSUM_START
    assert not is_well_formed(prefix)
