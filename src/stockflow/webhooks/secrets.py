"""Signing secrets: made here, shown once, kept encrypted.

Stockflow must sign with the secret itself (HMAC), so it cannot keep only a hash as it
does for API keys; it keeps the secret encrypted with a key derived from
``STOCKFLOW_SECRET_KEY``, so a copy of the database alone does not let anyone sign as us.
Changing the secret key makes the stored secrets unreadable: rotate each endpoint's
secret after changing it.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

SECRET_OVERLAP = timedelta(hours=24)
"""How long a replaced secret keeps signing (and verifying) beside the new one."""
SECRET_PREFIX = "whsec_"  # noqa: S105  (the format's prefix, not a secret)
_SECRET_BYTES = 32


def new_secret() -> str:
    """A Standard Webhooks secret: ``whsec_`` and 32 random bytes in base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(_SECRET_BYTES)).decode()


class SecretBox:
    """Encrypts and decrypts signing secrets at rest."""

    def __init__(self, secret_key: str) -> None:
        derived = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"stockflow webhook secrets"
        ).derive(secret_key.encode())
        self._fernet = Fernet(base64.urlsafe_b64encode(derived))

    def seal(self, secret: str) -> str:
        return self._fernet.encrypt(secret.encode()).decode()

    def open_previous(self, sealed: str | None) -> str | None:
        """A replaced secret, or None if there is none or it was sealed under another
        service key (after STOCKFLOW_SECRET_KEY changed): it only ever adds a second
        signature, so one that cannot be read is simply not used."""
        if sealed is None:
            return None
        try:
            return self.open(sealed)
        except ValueError:
            return None

    def open(self, sealed: str) -> str:
        try:
            return self._fernet.decrypt(sealed.encode()).decode()
        except InvalidToken:
            raise ValueError(
                "a stored signing secret cannot be decrypted: was STOCKFLOW_SECRET_KEY "
                "changed? Rotate the secret."
            ) from None

    def in_use(
        self,
        current: str | None,
        previous: str | None,
        previous_expires_at: datetime | None,
        *,
        now: datetime,
        require_current: bool,
    ) -> list[str]:
        """The secrets that sign (or verify) now: the current one, and the replaced one
        until it expires. A replaced one that cannot be read is left out; so is an
        unreadable current one unless ``require_current`` (then `open` says why)."""
        found = []
        if current is not None:
            found.append(self.open(current) if require_current else self.open_previous(current))
        elif require_current:
            raise ValueError(
                "no signing secret: issue one with POST /v1/suppliers/{id}/signing-secret"
            )
        if previous_expires_at is not None and previous_expires_at > now:
            found.append(self.open_previous(previous))
        return [secret for secret in found if secret is not None]


@dataclass(frozen=True, slots=True)
class Rotation:
    secret: str
    """The new secret, to be shown once."""
    sealed: str
    previous: str | None
    previous_expires_at: datetime | None


def rotate(box: SecretBox, current: str | None, *, now: datetime) -> Rotation:
    """A new secret; the current one (if any) stays in use for `SECRET_OVERLAP`. Rotating
    again within that time ends the older one at once."""
    secret = new_secret()
    expires = now + SECRET_OVERLAP if current is not None else None
    return Rotation(secret, box.seal(secret), current, expires)
