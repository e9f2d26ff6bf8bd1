"""Every background job in one place: the outbox relay, applying supplier messages,
housekeeping (pruning) and the submission of consolidated purchase orders.

`stockflow worker` runs it as a process of its own; `stockflow serve` also runs it inside
each server process unless told not to (the embedded default). Several at once are safe:
each job claims its rows with ``SKIP LOCKED`` and a lease, or is one guarded statement.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from stockflow.adapters.mail import SmtpMailer, SmtpSettings
from stockflow.adapters.webhook_http import HttpWebhookSender, WebhookSender
from stockflow.config import Settings
from stockflow.db.engine import Database
from stockflow.observability.logging import get_logger
from stockflow.payments import expiry, refunds, stripe_events
from stockflow.payments.checkout import build_gateway, payment_lease
from stockflow.webhooks.secrets import SecretBox
from stockflow.workers import maintenance
from stockflow.workers.relay import Relay, RelaySettings

log = get_logger(__name__)


def relay_settings(settings: Settings) -> RelaySettings:
    return RelaySettings(
        lease_seconds=settings.delivery_lease_seconds,
        concurrency=settings.webhook_concurrency,
        poll_seconds=settings.relay_poll_seconds,
    )


def build_mailer(settings: Settings) -> SmtpMailer | None:
    if settings.smtp_host is None:
        return None
    return SmtpMailer(
        SmtpSettings(
            host=settings.smtp_host,
            port=settings.smtp_port,
            username=settings.smtp_username,
            password=(
                settings.smtp_password.get_secret_value() if settings.smtp_password else None
            ),
            starttls=settings.smtp_security == "starttls",
            use_tls=settings.smtp_security == "tls",
            timeout_seconds=settings.smtp_timeout_seconds,
            sender=settings.mail_from,
        )
    )


def build_relay(
    settings: Settings, database: Database, *, sender: WebhookSender | None = None
) -> Relay:
    return Relay(
        database,
        sender
        or HttpWebhookSender(
            timeout_seconds=settings.webhook_timeout_seconds,
            allow_private=settings.webhooks_allow_private,
        ),
        SecretBox(settings.secret_key.get_secret_value()),
        settings=relay_settings(settings),
        mailer=build_mailer(settings),
    )


async def _every(
    name: str, job: Callable[[], Awaitable[object]], *, interval: float, stop: asyncio.Event
) -> None:
    """Run ``job`` every ``interval`` seconds until ``stop``; a job in hand is finished."""
    while not stop.is_set():
        try:
            await job()
        except Exception:
            # A failed round (database restarting, say) is retried at the next interval.
            log.warning("background_job_failed", job=name, exc_info=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)


class Worker:
    def __init__(self, settings: Settings, database: Database, relay: Relay) -> None:
        self._settings = settings
        self._database = database
        self.relay = relay

    async def run(self, stop: asyncio.Event) -> None:
        """Until ``stop`` is set; then let every job finish what it holds, and return."""
        settings, database = self._settings, self._database
        jobs = [
            self.relay.run(stop),
            _every(
                "maintenance",
                lambda: maintenance.run_once(
                    database, event_retention_days=settings.event_retention_days
                ),
                interval=settings.maintenance_interval_seconds,
                stop=stop,
            ),
        ]
        jobs.append(
            _every(
                "supplier_messages",
                lambda: maintenance.apply_supplier_messages(database),
                interval=settings.relay_poll_seconds,
                stop=stop,
            )
        )
        if settings.po_consolidation_seconds > 0:
            jobs.append(
                _every(
                    "purchase_order_submission",
                    lambda: maintenance.submit_due_purchase_orders(database),
                    interval=settings.po_submit_interval_seconds,
                    stop=stop,
                )
            )
        gateway = build_gateway(settings)
        if gateway is not None:
            jobs.append(
                _every(
                    "stripe_events",
                    lambda: stripe_events.apply_waiting(database, gateway),
                    interval=settings.relay_poll_seconds,
                    stop=stop,
                )
            )
            jobs.append(
                _every(
                    "stripe_refunds",
                    lambda: refunds.send_pending(database, gateway),
                    interval=settings.refund_retry_seconds,
                    stop=stop,
                )
            )
        if settings.payments != "none":
            jobs.append(
                _every(
                    "payment_expiry",
                    lambda: expiry.expire_unpaid(
                        database,
                        gateway,
                        unpaid_for=settings.payment_timeout,
                        lease=payment_lease(settings),
                    ),
                    # Every minute, or more often for a short timeout.
                    interval=min(60.0, max(1.0, settings.payment_timeout.total_seconds() / 10)),
                    stop=stop,
                )
            )
        log.info("worker_started", jobs=len(jobs))
        try:
            await asyncio.gather(*jobs)
        finally:
            if gateway is not None:
                await gateway.aclose()
            log.info("worker_stopped")
