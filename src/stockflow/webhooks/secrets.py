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

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

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
