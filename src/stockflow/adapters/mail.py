"""Sending e-mail over SMTP with aiosmtplib (purchase orders to suppliers, notices to
customers). Built only when STOCKFLOW_SMTP_HOST is set."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate
from typing import Protocol

import aiosmtplib


class Mailer(Protocol):
    async def send(self, message: EmailMessage) -> None:
        """Hand the message to the mail server; raises `MailError` if it is not taken."""
        ...


class MailError(Exception):
    """The message was not accepted; the delivery is tried again later."""


@dataclass(frozen=True, slots=True)
class SmtpSettings:
    host: str
    port: int
    username: str | None
    password: str | None
    starttls: bool
    use_tls: bool
    timeout_seconds: float
    sender: str


class SmtpMailer:
    def __init__(self, settings: SmtpSettings) -> None:
        self._settings = settings

    @property
    def sender(self) -> str:
        return self._settings.sender

    async def send(self, message: EmailMessage) -> None:
        settings = self._settings
        if "From" not in message:
            message["From"] = settings.sender
        if "Date" not in message:
            message["Date"] = formatdate(localtime=False)
        try:
            # One deadline for the whole conversation: aiosmtplib's own timeout bounds each
            # command, and an attempt must end well within its delivery lease.
            async with asyncio.timeout(settings.timeout_seconds):
                await aiosmtplib.send(
                    message,
                    hostname=settings.host,
                    port=settings.port,
                    username=settings.username,
                    password=settings.password,
                    start_tls=settings.starttls,
                    use_tls=settings.use_tls,
                    timeout=settings.timeout_seconds,
                )
        except TimeoutError as exc:
            raise MailError(f"timed out after {settings.timeout_seconds} s") from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise MailError(f"{type(exc).__name__}: {exc}"[:500]) from exc
