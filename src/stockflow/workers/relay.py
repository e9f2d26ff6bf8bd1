"""The outbox relay: hands committed events to the webhook endpoints that want them, and
delivers them, retrying with backoff, at least once.

Two steps, each its own short transaction, neither holding a lock across a network call:

1. *Dispatch*: claim a batch of events not yet handed out, write one delivery per
   subscribed endpoint, mark the events handed out; all or nothing.
2. *Deliver*: lease due deliveries (``lease_until``, ``lease_token``) and commit; send each
   outside any transaction; write the result only if the lease is still ours. A worker
   killed mid-send leaves a lease that runs out, and another worker sends again with the
   same ``webhook-id`` (receivers drop the duplicate).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from stockflow.adapters.mail import Mailer, MailError
from stockflow.adapters.webhook_http import Reply, WebhookSender
from stockflow.db.engine import Database
from stockflow.events import messages
from stockflow.events.types import EventType, wants
from stockflow.ids import new_id
from stockflow.observability import metrics, tracing
from stockflow.observability.logging import get_logger
from stockflow.orders import readiness
from stockflow.webhooks import relay_queries as queries
from stockflow.webhooks import repository, schedule, signing
from stockflow.webhooks.relay_queries import Job
from stockflow.webhooks.secrets import SecretBox

log = get_logger(__name__)

_CUSTOMER_NOTICES = (EventType.ORDER_CREATED, EventType.ORDER_READY_TO_SHIP)
_SUPPLIER_TYPES = (EventType.PURCHASE_ORDER_SUBMITTED,)
_ADDRESSED_TYPES = (*_SUPPLIER_TYPES, *_CUSTOMER_NOTICES)

Clock = Callable[[], datetime]

# Verdicts as the deliveries metric counts them. A receiver that answered 410 is disabled
# and its delivery waits, pending, for it to be enabled again: not dead.
_OUTCOMES = {
    schedule.Verdict.DELIVERED: "delivered",
    schedule.Verdict.RETRY: "retrying",
    schedule.Verdict.DEAD: "dead",
    schedule.Verdict.ENDPOINT_GONE: "retrying",
}


def system_clock() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class RelaySettings:
    lease_seconds: float = 60.0
    concurrency: int = 16
    per_endpoint: int = 4
    """Deliveries in flight to one endpoint at most: a slow one cannot take every slot."""
    dispatch_batch: int = 500
    poll_seconds: float = 0.5


class Relay:
    def __init__(
        self,
        database: Database,
        sender: WebhookSender,
        box: SecretBox,
        *,
        settings: RelaySettings | None = None,
        clock: Clock = system_clock,
        jitter: schedule.Jitter = schedule.random_jitter,
        mailer: Mailer | None = None,
    ) -> None:
        self._database = database
        self._sender = sender
        self._mailer = mailer
        self._box = box
        self._settings = settings or RelaySettings()
        self._clock = clock
        self._jitter = jitter
        self._in_flight: set[asyncio.Task[None]] = set()
        self._per_endpoint: Counter[str] = Counter()

    # --- 1. dispatch ------------------------------------------------------------------

    async def settle_readiness(self) -> int:
        """Write the ``order.ready_to_ship`` events that serving the backlog left to be
        decided (`stockflow.orders.readiness`); the number of orders told."""
        async with self._database.transaction() as session:
            return len(await readiness.settle(session, now=self._clock()))

    async def dispatch_once(self) -> int:
        """Hand one batch of events to their endpoints; the number of events handed out."""
        now = self._clock()
        async with self._database.transaction() as session:
            # Only the events whose receivers they name themselves are read whole: the
            # rest (most orders, with mail off) are handed out by type alone.
            events = await queries.claim_undispatched(
                session,
                limit=self._settings.dispatch_batch,
                with_data=_ADDRESSED_TYPES if self._mailer is not None else _SUPPLIER_TYPES,
            )
            if not events:
                return 0
            endpoints = await queries.subscribers(session)
            targets = [
                ("webhook", endpoint.id, event)
                for event in events
                for endpoint in endpoints
                # An endpoint hears of what happens from its creation on.
                if wants(endpoint.events, event.type) and endpoint.created_at <= event.created_at
            ]
            targets.extend(await self._addressed(session, events))
            await repository.add_deliveries(
                session,
                [
                    {
                        "id": new_id("whd"),
                        "event_id": event.id,
                        "event_seq": event.seq,
                        "object_id": event.object_id,
                        "target_type": target_type,
                        "target_id": target_id,
                        "status": "pending",
                        "attempts": 0,
                        "max_attempts": schedule.MAX_ATTEMPTS,
                        "next_attempt_at": now,
                        "created_at": now,
                        "updated_at": now,
                    }
                    for target_type, target_id, event in targets
                ],
            )
            await queries.mark_dispatched(session, [event.seq for event in events], now=now)
        return len(events)

    async def _addressed(
        self, session: AsyncSession, events: list[queries.NewEvent]
    ) -> list[tuple[str, str, queries.NewEvent]]:
        """Receivers named by the event itself: a submitted purchase order goes to its
        supplier (unless the supplier's connector is manual); with mail configured, the
        customer of a new or ready-to-ship order gets a notice (if it has an address)."""
        objects = {event.id: json.loads(event.data)["object"] for event in events if event.data}
        submitted = [e for e in events if e.type == EventType.PURCHASE_ORDER_SUBMITTED]
        suppliers = await queries.suppliers_sent_to(
            session, sorted({objects[e.id]["supplier_id"] for e in submitted})
        )
        found = [
            ("supplier", objects[e.id]["supplier_id"], e)
            for e in submitted
            if objects[e.id]["supplier_id"] in suppliers
        ]
        if self._mailer is not None:
            noticed = [e for e in events if e.type in _CUSTOMER_NOTICES]
            customers = await queries.customers_with_email(
                session, sorted({objects[e.id]["customer_id"] for e in noticed})
            )
            found.extend(
                ("email", objects[e.id]["customer_id"], e)
                for e in noticed
                if objects[e.id]["customer_id"] in customers
            )
        return found

    # --- 2. deliver -------------------------------------------------------------------

    async def claim(self, limit: int) -> list[Job]:
        """Lease up to ``limit`` due deliveries, at most ``per_endpoint`` in flight to any
        one endpoint (those above it are handed back at once)."""
        now = self._clock()
        cap = self._settings.per_endpoint
        busy = [endpoint for endpoint, count in self._per_endpoint.items() if count >= cap]
        async with self._database.transaction() as session:
            jobs = await queries.claim_due(
                session,
                now=now,
                lease_until=now + timedelta(seconds=self._settings.lease_seconds),
                lease_token=new_id("lse"),
                limit=limit,
                busy_targets=busy,
            )
            taken: Counter[str] = Counter(self._per_endpoint)
            kept: list[Job] = []
            extra: list[Job] = []
            for job in jobs:
                taken[job.target_id] += 1
                (kept if taken[job.target_id] <= cap else extra).append(job)
            if extra:
                await queries.release(session, [job.delivery_id for job in extra])
        return kept

    def _secrets(self, job: Job, now: datetime) -> list[str]:
        return self._box.in_use(
            job.secret,
            job.previous_secret,
            job.previous_secret_expires_at,
            now=now,
            require_current=True,
        )

    async def _send(self, job: Job, now: datetime) -> Reply:
        """One attempt, by the receiver's kind: a signed POST (webhook endpoint, or a
        supplier's webhook connector), or a mail (supplier's e-mail connector, customer)."""
        connector = (job.connector or {}).get("type")
        if job.target_type == "supplier" and connector not in ("webhook", "email"):
            return Reply(None, None, f"the supplier's connector is now {connector}", 0, True)
        if job.target_type == "webhook" or connector == "webhook":
            if job.url is None:
                return Reply(None, None, "the receiver no longer exists", 0, True)
            secrets = self._secrets(job, now)
            body = signing.event_body(
                event_id=job.event_id,
                event_type=job.event_type,
                created_at=job.event_created_at,
                data=job.data,
            )
            return await self._sender.post(
                job.url,
                body=body,
                headers=signing.headers(
                    message_id=job.event_id, body=body, secrets=secrets, now=now
                ),
            )
        if job.email is None:
            return Reply(None, None, "no e-mail address to send to", 0)
        if self._mailer is None:
            return Reply(None, None, "mail is not configured (STOCKFLOW_SMTP_HOST)", 0)
        obj = json.loads(job.data)["object"]
        name = job.name or ""
        if job.target_type == "supplier":
            message = messages.purchase_order_email(
                obj, supplier_name=name, to=job.email, event_id=job.event_id
            )
        elif job.event_type == EventType.ORDER_READY_TO_SHIP:
            message = messages.ready_to_ship_notice(
                obj, customer_name=name, to=job.email, event_id=job.event_id
            )
        else:
            message = messages.order_confirmation(
                obj, customer_name=name, to=job.email, event_id=job.event_id
            )
        started = time.monotonic()
        try:
            await self._mailer.send(message)
        except MailError as exc:
            return Reply(None, None, str(exc), int((time.monotonic() - started) * 1000))
        # SMTP's own "accepted" code, which the schedule reads as delivered.
        return Reply(250, None, None, int((time.monotonic() - started) * 1000))

    async def deliver(self, job: Job) -> schedule.Verdict:
        """Send one claimed delivery and write what came of it, in a span that continues
        the trace of the request that wrote the event."""
        with tracing.continued(
            f"deliver_{job.target_type}",
            job.trace_context,
            {
                "stockflow.delivery_id": job.delivery_id,
                "stockflow.event_id": job.event_id,
                "stockflow.event_type": job.event_type,
                "stockflow.target_id": job.target_id,
                "stockflow.attempt": job.attempts + 1,
            },
        ) as span:
            verdict = await self._deliver(job)
            if verdict is not schedule.Verdict.DELIVERED:
                tracing.failed(span, f"delivery {verdict.value}")
            return verdict

    async def _deliver(self, job: Job) -> schedule.Verdict:
        now = self._clock()
        try:
            reply = await self._send(job, now)
        except Exception as exc:
            # Counted as a failed attempt like any other, so it ends dead, never looping.
            log.warning("delivery_attempt_failed", delivery_id=job.delivery_id, exc_info=True)
            reply = Reply(None, None, f"{type(exc).__name__}: {exc}"[:500], 0)
        done = self._clock()
        attempts = job.attempts + 1
        outcome = (
            schedule.Outcome(schedule.Verdict.DEAD)
            if reply.permanent
            else schedule.after_attempt(
                attempts=attempts,
                max_attempts=job.max_attempts,
                status_code=reply.status_code,
                retry_after=(
                    schedule.parse_retry_after(reply.retry_after, now=done)
                    if reply.status_code in (429, 503)
                    else None
                ),
                now=done,
                jitter=self._jitter,
                gone_disables=job.target_type == "webhook",
            )
        )
        values: dict[str, object] = {
            "attempts": attempts,
            "last_status_code": reply.status_code,
            "last_error": reply.error,
        }
        if outcome.verdict is schedule.Verdict.DELIVERED:
            values.update(status="delivered", delivered_at=done)
        elif outcome.verdict is schedule.Verdict.DEAD:
            values.update(status="dead")
        else:
            values.update(next_attempt_at=outcome.next_attempt_at)
        async with self._database.transaction() as session:
            await queries.record_attempt(
                session,
                attempt_id=new_id("wha"),
                delivery_id=job.delivery_id,
                now=now,
                status_code=reply.status_code,
                latency_ms=reply.latency_ms,
                error=reply.error,
            )
            ours = await queries.finish(session, job=job, values=values, now=done)
            if ours and outcome.verdict is schedule.Verdict.ENDPOINT_GONE:
                await queries.disable_endpoint(
                    session,
                    endpoint_id=job.target_id,
                    reason=f"the receiver answered 410 Gone at {done.isoformat()}",
                    now=done,
                )
        log.info(
            "webhook_attempt",
            delivery_id=job.delivery_id,
            endpoint_id=job.target_id,
            event_id=job.event_id,
            status_code=reply.status_code,
            error=reply.error,
            verdict=outcome.verdict.value,
            lease_kept=ours,
        )
        if ours:
            metrics.DELIVERIES.labels(job.target_type, _OUTCOMES[outcome.verdict]).inc()
        if outcome.verdict is schedule.Verdict.DEAD:
            log.warning(
                "webhook_delivery_dead", delivery_id=job.delivery_id, endpoint_id=job.target_id
            )
        return outcome.verdict

    # --- running ----------------------------------------------------------------------

    async def aclose(self) -> None:
        await self._sender.aclose()

    async def run_once(self) -> int:
        """Dispatch everything waiting, then deliver what is due, waiting for the sends;
        the number of deliveries attempted. For the CLI and tests; `run` is the loop."""
        await self.settle_readiness()
        while await self.dispatch_once():
            pass
        jobs = await self.claim(self._settings.concurrency)
        await asyncio.gather(*(self.deliver(job) for job in jobs))
        return len(jobs)

    def _start(self, job: Job) -> None:
        self._per_endpoint[job.target_id] += 1
        task = asyncio.create_task(self._deliver_logged(job))
        self._in_flight.add(task)

        def done(finished: asyncio.Task[None]) -> None:
            self._in_flight.discard(finished)
            self._per_endpoint[job.target_id] -= 1
            if self._per_endpoint[job.target_id] <= 0:
                del self._per_endpoint[job.target_id]

        task.add_done_callback(done)

    async def _deliver_logged(self, job: Job) -> None:
        try:
            await self.deliver(job)
        except Exception:
            # The lease runs out and the delivery is tried again.
            metrics.JOB_FAILURES.labels("delivery").inc()
            log.exception("webhook_delivery_failed", delivery_id=job.delivery_id)

    async def _round(self) -> bool:
        """One pass of the loop; whether it found work (so the next need not wait)."""
        now = self._clock()
        async with self._database.transaction(write=False) as session:
            work = await queries.work_waiting(session, now=now)
        if work.readiness:
            await self.settle_readiness()
        dispatched = await self.dispatch_once() if work.undispatched or work.readiness else 0
        free = self._settings.concurrency - len(self._in_flight)
        jobs = await self.claim(free) if free > 0 and (work.claimable or dispatched) else []
        for job in jobs:
            self._start(job)
        # Straight on only while work is left behind (a full batch); otherwise the next
        # round waits a poll interval, so that a busy service's relay hands events out in
        # batches instead of spinning on every few.
        return dispatched >= self._settings.dispatch_batch or len(jobs) == free > 0

    async def run(self, stop: asyncio.Event) -> None:
        """Until ``stop`` is set; then finish the sends in hand (each bounded by its
        timeout) and return."""
        duration = metrics.JOB_DURATION.labels("relay")
        failures = metrics.JOB_FAILURES.labels("relay")
        while not stop.is_set():
            began = time.perf_counter()
            try:
                busy = await self._round()
            except Exception:
                failures.inc()
                log.warning("relay_round_failed", exc_info=True)
                busy = False
            duration.observe(time.perf_counter() - began)
            if busy:
                await asyncio.sleep(0)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._settings.poll_seconds)
        if self._in_flight:
            await asyncio.gather(*self._in_flight, return_exceptions=True)
