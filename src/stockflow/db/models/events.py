"""The outbox (events), and what carries events out: webhook endpoints and deliveries."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from stockflow.db.base import Base, JSONType, UTCDateTime, utcnow

# SQLite numbers rows itself only for a column declared exactly INTEGER PRIMARY KEY.
_SEQUENCE = BigInteger().with_variant(Integer(), "sqlite")


class Event(Base):
    """A fact that happened, written in the transaction that made it happen.

    ``seq`` orders the events of one object: an object's events are written while its row
    is locked, so they take their numbers in the order they commit. It is never used as a
    "read everything after" cursor, since numbers are given at insert, not at commit.
    """

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_object_id_seq", "object_id", "seq"),
        Index("ix_events_type_id", "type", "id"),
        # The dispatcher's queue: the few events not yet handed to their receivers.
        Index(
            "ix_events_undispatched",
            "seq",
            postgresql_where=text("dispatched_at IS NULL"),
            sqlite_where=text("dispatched_at IS NULL"),
        ),
    )

    seq: Mapped[int] = mapped_column(_SEQUENCE, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(40), unique=True)
    type: Mapped[str] = mapped_column(String(60))
    object_type: Mapped[str] = mapped_column(String(40))
    object_id: Mapped[str] = mapped_column(String(40))
    # The event's ``data`` member as JSON text, exactly as receivers get it (text, not
    # JSONB: JSONB would reorder the object's keys).
    data: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    dispatched_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The W3C ``traceparent`` of the request that wrote the event, when tracing is on: the
    # worker that delivers it continues that trace.
    trace_context: Mapped[str | None] = mapped_column(String(60))


class WebhookEndpoint(Base):
    __tablename__ = "webhook_endpoints"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    url: Mapped[str] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    # Event types sent to it; ``["*"]`` for all.
    events: Mapped[list[str]] = mapped_column(JSONType)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    # Signing secrets, encrypted with a key derived from the service's secret key. The
    # previous one still signs until it expires, so receivers can roll over.
    secret: Mapped[str] = mapped_column(Text)
    previous_secret: Mapped[str | None] = mapped_column(Text)
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(String(80))
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __mapper_args__ = {"version_id_col": version}


DELIVERY_STATUSES = ("pending", "delivered", "dead")


class Delivery(Base):
    """One event on its way to one receiver, retried until delivered or dead.

    A worker claims a due delivery by setting a lease (``lease_until``, ``lease_token``)
    and commits before it sends; a worker that dies mid-send leaves a lease that runs out,
    and another takes the delivery. Its result is written only by the lease's holder.
    """

    __tablename__ = "deliveries"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'delivered', 'dead')", name="status_known"),
        CheckConstraint(
            "target_type IN ('webhook', 'supplier', 'email')", name="target_type_known"
        ),
        # Due work, soonest first.
        Index(
            "ix_deliveries_due",
            "next_attempt_at",
            postgresql_where=text("status = 'pending'"),
            sqlite_where=text("status = 'pending'"),
        ),
        # "Is an earlier event of this object still on its way to this receiver?"
        Index("ix_deliveries_target_object_seq", "target_id", "object_id", "event_seq"),
        Index("ix_deliveries_target_id_id", "target_id", "id"),
        Index("ix_deliveries_event_id", "event_id"),
        # Dead letters, counted at every metrics scrape.
        Index(
            "ix_deliveries_dead",
            "target_type",
            postgresql_where=text("status = 'dead'"),
            sqlite_where=text("status = 'dead'"),
        ),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(40), ForeignKey("events.id"))
    event_seq: Mapped[int] = mapped_column(BigInteger)
    object_id: Mapped[str] = mapped_column(String(40))
    target_type: Mapped[str] = mapped_column(String(20))
    target_id: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(20), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # The attempt after which a failure is final (a manual retry allows one more).
    max_attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lease_token: Mapped[str | None] = mapped_column(String(40))
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class DeliveryAttempt(Base):
    """One try at a delivery: when, what came back, how long it took."""

    __tablename__ = "delivery_attempts"
    __table_args__ = (Index("ix_delivery_attempts_delivery_id_id", "delivery_id", "id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    delivery_id: Mapped[str] = mapped_column(String(40), ForeignKey("deliveries.id"))
    attempted_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status_code: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[int] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)


class ReadinessCheck(Base):
    """An order that serving the backlog gave units to. The worker looks at it later,
    with the order's row locked, and tells ``order.ready_to_ship`` once it waits for
    nothing: serving holds stock rows, and taking an order row after them would invert
    the order-then-stock order that shipping and cancelling lock in."""

    __tablename__ = "readiness_checks"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    order_id: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class InboxMessage(Base):
    """A message a supplier sent us, kept once by its id, applied by the worker."""

    __tablename__ = "inbox_messages"
    __table_args__ = (
        UniqueConstraint("source_id", "message_id", name="uq_inbox_messages_source_message"),
        Index(
            "ix_inbox_messages_unprocessed",
            "received_at",
            postgresql_where=text("processed_at IS NULL"),
            sqlite_where=text("processed_at IS NULL"),
        ),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    source_type: Mapped[str] = mapped_column(String(20))
    source_id: Mapped[str] = mapped_column(String(40))
    message_id: Mapped[str] = mapped_column(String(200))
    type: Mapped[str] = mapped_column(String(60))
    body: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    error: Mapped[str | None] = mapped_column(Text)


class WorkerHeartbeat(Base):
    """One row per running worker, refreshed every few seconds: how the API (``/readyz``,
    ``/metrics``) knows whether background work is being done at all."""

    __tablename__ = "worker_heartbeats"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    hostname: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    beat_at: Mapped[datetime] = mapped_column(UTCDateTime)
