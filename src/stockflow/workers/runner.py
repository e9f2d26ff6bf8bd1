"""Every background job in one place: the outbox relay, applying supplier messages,
housekeeping (pruning) and the submission of consolidated purchase orders.

`stockflow worker` runs it as a process of its own; `stockflow serve` also runs it inside
each server process unless told not to (the embedded default). Several at once are safe:
each job claims its rows with ``SKIP LOCKED`` and a lease, or is one guarded statement.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from stockflow.adapters.mail import SmtpMailer, SmtpSettings
from stockflow.adapters.webhook_http import HttpWebhookSender, WebhookSender
from stockflow.config import Settings
from stockflow.db.engine import Database
from stockflow.ids import new_id
from stockflow.observability import metrics, tracing
from stockflow.observability import repository as observed
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
    duration = metrics.JOB_DURATION.labels(name)
    failures = metrics.JOB_FAILURES.labels(name)
    while not stop.is_set():
        began = time.perf_counter()
        try:
            await job()
        except Exception:
            # A failed round (database restarting, say) is retried at the next interval.
            failures.inc()
            log.warning("background_job_failed", job=name, exc_info=True)
        duration.observe(time.perf_counter() - began)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)


# A worker silent this long is gone for good: its heartbeat row is removed.
_FORGET_AFTER = timedelta(days=1)


class Heartbeat:
    """This worker's row in ``worker_heartbeats``, refreshed every interval: how the API
    knows background work is being done (``/readyz``, ``/metrics``, the worker-down
    alert)."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self.worker_id = new_id("wkr")
        self._started_at = datetime.now(UTC)
        self._hostname = socket.gethostname()[:255]

    async def beat(self) -> None:
        now = datetime.now(UTC)
        async with self._database.transaction() as session:
            await observed.beat(
                session,
                worker_id=self.worker_id,
                hostname=self._hostname,
                pid=os.getpid(),
                started_at=self._started_at,
                now=now,
            )
            await observed.forget_heartbeats(session, older_than=now - _FORGET_AFTER)
        metrics.WORKER_HEARTBEATS.inc()

    async def stop(self) -> None:
        async with self._database.transaction() as session:
            await observed.forget_heartbeats(session, worker_id=self.worker_id)


class Worker:
    def __init__(self, settings: Settings, database: Database, relay: Relay) -> None:
        self._settings = settings
        self._database = database
        self.relay = relay
        self.heartbeat = Heartbeat(database)

    async def run(self, stop: asyncio.Event) -> None:
        """Until ``stop`` is set; then let every job finish what it holds, and return."""
        with tracing.quiet():
            await self._run(stop)

    async def _run(self, stop: asyncio.Event) -> None:
        settings, database = self._settings, self._database
        jobs = [
            _every(
                "heartbeat",
                self.heartbeat.beat,
                interval=settings.worker_heartbeat_seconds,
                stop=stop,
            ),
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
            with contextlib.suppress(Exception):
                # Otherwise its row ages out: an orderly stop is not a dead worker.
                await self.heartbeat.stop()
            log.info("worker_stopped")
