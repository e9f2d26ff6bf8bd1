"""Messages from suppliers: an acknowledgement with the date a purchase order will
arrive, or a shipment notice. Received on ``POST /v1/suppliers/{id}/inbound``, checked
against the supplier's signing secret, kept once by their ``webhook-id`` (the inbox), and
applied by the worker, so that a supplier resending a message changes nothing twice.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from pydantic_core import to_jsonable_python
from sqlalchemy.ext.asyncio import AsyncSession
from standardwebhooks import Webhook, WebhookVerificationError

from stockflow.audit import service as audit
from stockflow.auth.roles import Principal, Role
from stockflow.db.models import InboxMessage, Supplier
from stockflow.errors import InvalidRequest, InvalidSignature, NotFound, StockflowError
from stockflow.observability.logging import get_logger
from stockflow.purchasing import inbox_repository, po_service
from stockflow.purchasing import repository as suppliers
from stockflow.purchasing.inbound_schemas import InboundAccepted, SigningSecret, SupplierMessage
from stockflow.purchasing.schemas import SupplierRead
from stockflow.webhooks.secrets import SecretBox, rotate

log = get_logger(__name__)
BATCH = 50


def _secrets(supplier: Supplier, box: SecretBox, now: datetime) -> list[str]:
    # Unreadable secrets (sealed under an earlier service key) verify nothing.
    return box.in_use(
        supplier.secret,
        supplier.previous_secret,
        supplier.previous_secret_expires_at,
        now=now,
        require_current=False,
    )


_MESSAGE_ID = re.compile(r"^[\x21-\x7e]{1,200}$")


def _verified(body: bytes, headers: Mapping[str, str], secrets: list[str]) -> None:
    for secret in secrets:
        try:
            Webhook(secret).verify(body, dict(headers), json_parse=False)
        except (WebhookVerificationError, ValueError, UnicodeError):
            # Malformed signatures and bodies that are not UTF-8 verify nothing either.
            continue
        return
    raise InvalidSignature("The message's signature does not verify.")


async def verify(
    session: AsyncSession,
    *,
    supplier_id: str,
    body: bytes,
    headers: Mapping[str, str],
    box: SecretBox,
) -> SupplierMessage:
    """The message, if the supplier signed it (read only: an unsigned request never
    reaches a write). 401 for an unknown supplier or a bad signature alike, so the
    endpoint tells nothing to whoever cannot sign; 422 for a signed message that is not
    one Stockflow understands."""
    supplier = await suppliers.get_supplier(session, supplier_id)
    if supplier is None:
        raise InvalidSignature("The message's signature does not verify.")
    _verified(body, headers, _secrets(supplier, box, datetime.now(UTC)))
    if not _MESSAGE_ID.match(headers["webhook-id"]):
        raise InvalidRequest(
            "webhook-id must be 1 to 200 printable ASCII characters.",
            errors=[{"location": "header.webhook-id", "message": "1-200 printable ASCII"}],
        )
    try:
        message = SupplierMessage.model_validate_json(body)
    except ValidationError as exc:
        raise InvalidRequest(
            "The message is not a supplier message.",
            errors=[
                {"location": ".".join(["body", *map(str, error["loc"])]), "message": error["msg"]}
                for error in exc.errors()
            ],
        ) from None
    if message.type == "purchase_order.acknowledged" and message.expected_delivery_date is None:
        raise InvalidRequest(
            "An acknowledgement needs expected_delivery_date.",
            errors=[{"location": "body.expected_delivery_date", "message": "required"}],
        )
    return message


async def keep(
    session: AsyncSession,
    *,
    supplier_id: str,
    message: SupplierMessage,
    message_id: str,
    body: bytes,
) -> InboundAccepted:
    """Keep a verified message once by its id, for the worker to apply."""
    new = await inbox_repository.add_if_absent(
        session,
        source_id=supplier_id,
        message_id=message_id,
        type_=message.type,
        body=body.decode(),
        now=datetime.now(UTC),
    )
    return InboundAccepted(id=message_id, duplicate=not new)


def _audited(supplier: Supplier) -> dict[str, Any]:
    """The supplier as the API shows it, with what may be told of its signing secret: only
    whether it has one, and until when a replaced one is honoured."""
    return {
        **SupplierRead.model_validate(supplier).model_dump(mode="json"),
        **to_jsonable_python(
            {
                "has_signing_secret": supplier.secret is not None,
                "previous_secret_expires_at": supplier.previous_secret_expires_at,
            }
        ),
    }


async def issue_secret(
    session: AsyncSession, *, actor: Principal, box: SecretBox, supplier_id: str
) -> SigningSecret:
    """A new signing secret for the supplier (shown once): it signs the purchase orders a
    webhook connector sends, and the supplier signs its messages with it. The one it
    replaces stays valid for 24 hours, both ways."""
    supplier = await suppliers.get_supplier_for_update(session, supplier_id)
    if supplier is None:
        raise NotFound(f"Supplier {supplier_id} does not exist.")
    before = _audited(supplier)
    rotation = rotate(box, supplier.secret, now=datetime.now(UTC))
    supplier.secret = rotation.sealed
    supplier.previous_secret = rotation.previous
    supplier.previous_secret_expires_at = expires = rotation.previous_expires_at
    await suppliers.save(session)
    await audit.record(
        session,
        actor=actor,
        action="supplier.signing_secret_issued",
        resource_type="supplier",
        resource_id=supplier_id,
        before=before,
        after=_audited(supplier),
    )
    return SigningSecret(secret=rotation.secret, previous_secret_expires_at=expires)


async def _apply(session: AsyncSession, kept: InboxMessage) -> None:
    message = SupplierMessage.model_validate_json(kept.body)
    po = await po_service.found(session, message.purchase_order_id)
    if po.supplier_id != kept.source_id:
        raise InvalidRequest(
            f"Purchase order {message.purchase_order_id} is not one of this supplier's."
        )
    if message.expected_delivery_date is None:
        return  # a shipment notice without a date: kept, nothing to change
    await po_service.acknowledge(
        session,
        actor=Principal(id=f"supplier:{kept.source_id}", role=Role.SERVICE, name="supplier"),
        po_id=po.id,
        expected_delivery_date=message.expected_delivery_date,
    )


async def waiting(session: AsyncSession) -> bool:
    return await inbox_repository.any_unprocessed(session)


def _purchase_order_of(kept: InboxMessage) -> str:
    try:
        return SupplierMessage.model_validate_json(kept.body).purchase_order_id
    except ValidationError:
        return ""


async def process(session: AsyncSession, *, now: datetime) -> int:
    """Apply one batch of kept messages, each in a savepoint: one that cannot be applied
    (an unknown or cancelled purchase order, or anything unexpected) is marked with its
    error and never blocks the ones behind it. Applied in purchase-order id order (each
    PO's messages in the order they came), so two workers lock POs in the same order."""
    messages = await inbox_repository.claim_unprocessed(session, limit=BATCH)
    for kept in sorted(messages, key=_purchase_order_of):
        error: str | None = None
        try:
            async with session.begin_nested():
                await _apply(session, kept)
        except StockflowError as exc:
            error = exc.detail
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
            log.exception("supplier_message_failed", message_id=kept.message_id)
        if error is not None:
            log.warning("supplier_message_not_applied", message_id=kept.message_id, error=error)
        await inbox_repository.mark_processed(session, message_id=kept.id, now=now, error=error)
    return len(messages)
