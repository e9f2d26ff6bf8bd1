"""What erasing a customer removes, as pure functions over the records that mention it.

Erasure keeps what the business must keep (quantities, money, the stock ledger, the order
and payment history) and removes what identifies the person: the customer's name, e-mail,
phone, the storefront's reference and the free-form data and texts kept with the customer
and its orders. Copies of those live in JSON documents written over time (events, audit
records, stored idempotent responses, provider messages), so each document that mentions
the customer or one of its orders is walked: members that hold personal data by their
name are replaced, and any other text that contains one of the customer's personal values
loses that value.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

ERASED = "[erased]"
ERASED_NAME = "Erased customer"
# Members that hold a person's data wherever they appear in a document about the customer
# (the customer itself, an API key's name, a payment provider's billing details).
PERSONAL_MEMBERS = frozenset(
    {
        "name",
        "email",
        "phone",
        "external_ref",
        "receipt_email",
        "billing_details",
        "shipping",
        "address",
        "customer_name",
    }
)
# Free text written by people about the customer or its orders.
FREE_TEXT_MEMBERS = frozenset({"cancel_reason", "reference", "reason", "note", "description"})
# Values shorter than this are removed only where they are a whole text, never from inside
# another (a one-letter value would otherwise be cut out of every word).
_MIN_FRAGMENT = 5


def _leaves(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _leaves(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _leaves(item)


@dataclass(frozen=True, slots=True)
class PersonalData:
    """The texts that identify one customer, to be removed wherever they were copied."""

    values: frozenset[str]

    @classmethod
    def of(
        cls,
        *,
        name: str,
        email: str | None,
        phone: str | None,
        external_ref: str | None,
        documents: Iterable[Any] = (),
    ) -> PersonalData:
        """From the customer's own fields and its free-form documents (its metadata and
        its orders' metadata)."""
        found = {name, email, phone, external_ref}
        for document in documents:
            found.update(_leaves(document))
        return cls(frozenset(v.strip() for v in found if v and v.strip() and v != ERASED))

    @property
    def _fragments(self) -> re.Pattern[str] | None:
        long = sorted((v for v in self.values if len(v) >= _MIN_FRAGMENT), key=len, reverse=True)
        if not long:
            return None
        return re.compile("|".join(re.escape(v) for v in long), re.IGNORECASE)

    def scrub_text(self, text: str) -> str:
        if text.strip().casefold() in {v.casefold() for v in self.values}:
            return ERASED
        pattern = self._fragments
        return text if pattern is None else pattern.sub(ERASED, text)

    def scrub(self, value: Any) -> Any:
        """A JSON value with the customer's personal data removed."""
        if isinstance(value, str):
            return self.scrub_text(value)
        if isinstance(value, Mapping):
            return {key: self._member(key, item) for key, item in value.items()}
        if isinstance(value, list):
            return [self.scrub(item) for item in value]
        return value

    def _member(self, key: str, value: Any) -> Any:
        if key == "metadata" and isinstance(value, Mapping):
            return {}
        if key in PERSONAL_MEMBERS or key in FREE_TEXT_MEMBERS:
            if isinstance(value, str):
                return ERASED
            if isinstance(value, Mapping | list):
                return None
        return self.scrub(value)

    def scrub_document(self, text: str) -> str:
        """A stored JSON text (or plain text) with the customer's personal data removed,
        written back as compactly as the service writes its JSON."""
        try:
            value = json.loads(text)
        except ValueError:
            return self.scrub_text(text)
        return json.dumps(self.scrub(value), ensure_ascii=False, separators=(",", ":"))
