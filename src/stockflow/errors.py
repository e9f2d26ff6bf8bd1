"""Domain errors. Each carries its problem type, title and HTTP status, so services raise
what went wrong in domain terms and one handler renders every error as problem+json.

The problem type is a relative URI (``/problems/<slug>``) that the service itself serves,
so a client can look up what a type means from the same host.
"""

from __future__ import annotations

from typing import Any, ClassVar

PROBLEM_TYPES: dict[str, tuple[str, str]] = {}
"""slug -> (title, description) for every problem type the API can return."""


def problem_type_uri(slug: str) -> str:
    return f"/problems/{slug}"


RESERVED_MEMBERS = frozenset({"type", "title", "status", "detail", "instance", "request_id"})
"""Members every problem response carries, so no error may use them as extensions."""


class StockflowError(Exception):
    """Base of every error the API turns into a problem response."""

    slug: ClassVar[str] = "internal-error"
    title: ClassVar[str] = "Internal error"
    status: ClassVar[int] = 500
    description: ClassVar[str] = "The server failed to process the request."

    def __init__(self, detail: str, **extensions: Any) -> None:
        clashing = RESERVED_MEMBERS.intersection(extensions)
        if clashing:
            # Would overwrite (or collide with) the problem's own members when rendered.
            raise ValueError(f"reserved problem members used as extensions: {sorted(clashing)}")
        super().__init__(detail)
        self.detail = detail
        self.extensions = extensions

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        PROBLEM_TYPES[cls.slug] = (cls.title, cls.description)

    @property
    def type(self) -> str:
        return problem_type_uri(self.slug)


PROBLEM_TYPES[StockflowError.slug] = (StockflowError.title, StockflowError.description)


class NotFound(StockflowError):
    slug = "not-found"
    title = "Not found"
    status = 404
    description = "The resource does not exist, or the caller may not see it."


class AuthenticationRequired(StockflowError):
    slug = "unauthenticated"
    title = "Authentication required"
    status = 401
    description = "Send a valid, unrevoked API key as `Authorization: Bearer <key>`."


class PermissionDenied(StockflowError):
    slug = "forbidden"
    title = "Forbidden"
    status = 403
    description = "The API key's role may not perform this operation."


class InvalidRequest(StockflowError):
    slug = "validation-error"
    title = "Invalid request"
    status = 422
    description = (
        "The request is not valid. `errors` lists each offending field with its "
        "location and a message."
    )


class InvalidCursor(StockflowError):
    slug = "invalid-cursor"
    title = "Invalid cursor"
    status = 422
    description = "The `cursor` parameter is not one this list returned; start again without it."


class AlreadyExists(StockflowError):
    slug = "already-exists"
    title = "Already exists"
    status = 409
    description = "A resource with the same unique key (for example the SKU) already exists."


class PreconditionFailed(StockflowError):
    slug = "precondition-failed"
    title = "Precondition failed"
    status = 412
    description = (
        "The `If-Match` header does not match the resource's current `ETag`: someone else "
        "changed it. Read it again and reapply the change."
    )


class StockBelowReserved(StockflowError):
    slug = "stock-below-reserved"
    title = "Stock would fall below what is reserved"
    status = 409
    description = (
        "The adjustment would leave less on hand than is promised to open orders (or less "
        "than zero). `on_hand`, `reserved` and `delta` say by how much."
    )


class ServiceUnavailable(StockflowError):
    slug = "service-unavailable"
    title = "Service unavailable"
    status = 503
    description = (
        "The database is unreachable, busy or not migrated, or the request collided with a "
        "concurrent one and was rolled back. Nothing was changed. Retry after the number of "
        "seconds in `Retry-After`."
    )

    def __init__(self, detail: str, *, retry_after_seconds: int = 5, **extensions: Any) -> None:
        super().__init__(detail, **extensions)
        self.retry_after_seconds = retry_after_seconds


class IdempotencyKeyReused(StockflowError):
    slug = "idempotency-key-reused"
    title = "Idempotency key reused with a different request"
    status = 422
    description = (
        "This `Idempotency-Key` was first used for a different request (another method, URL "
        "or JSON body). Use a new key for a new request."
    )


class IdempotencyKeyInUse(StockflowError):
    slug = "idempotency-key-in-use"
    title = "Request with this idempotency key in progress"
    status = 409
    description = (
        "An earlier request with this `Idempotency-Key` is still running. Retry after a "
        "moment: you will get its response once it has finished, or it will run anew if it "
        "failed."
    )


class UnknownCustomer(StockflowError):
    slug = "unknown-customer"
    title = "Unknown customer"
    status = 422
    description = "The order names a customer that does not exist."


class UnknownSku(StockflowError):
    slug = "unknown-sku"
    title = "Unknown SKU"
    status = 422
    description = "A line names a SKU that is not in the catalog. `line` and `sku` name it."


class InactiveSku(StockflowError):
    slug = "inactive-sku"
    title = "Product not available"
    status = 422
    description = "A line names a product that is deactivated and cannot be ordered."


class InvalidQuantity(StockflowError):
    slug = "invalid-quantity"
    title = "Invalid quantity"
    status = 422
    description = (
        "A line's quantity is below 1 or, after merging lines of one SKU, above the per-line "
        "maximum; `line`, "
        "`sku`, `quantity` and `maximum` say which and why."
    )


class MixedCurrencies(StockflowError):
    slug = "mixed-currencies"
    title = "Mixed currencies"
    status = 422
    description = "The lines are priced in different currencies; an order has one currency."


class InvalidAmounts(StockflowError):
    slug = "invalid-amounts"
    title = "Invalid amounts"
    status = 422
    description = (
        "The discount exceeds subtotal plus shipping plus tax, so the total would be negative."
    )


class InsufficientStock(StockflowError):
    slug = "insufficient-stock"
    title = "Insufficient stock"
    status = 409
    description = (
        "Some lines ask for more than is available. "
        "`items` lists every short SKU with `requested` and `available`. Nothing was reserved."
    )


class ShipmentExceedsReserved(StockflowError):
    slug = "shipment-exceeds-reserved"
    title = "Shipment exceeds reserved stock"
    status = 409
    description = (
        "A shipment line asks to ship more than the order has reserved and not yet shipped. "
        "`items` lists each such SKU with `requested` and `shippable`."
    )


class BackorderNeedsSupplier(StockflowError):
    slug = "backorder-needs-supplier"
    title = "Backorder policy needs a preferred supplier"
    status = 422
    description = (
        "A product with `shortage_policy: backorder` orders its shortfall from its preferred "
        "supplier, so it needs one: give `suppliers` when creating it (or add one under "
        "/v1/products/{sku}/suppliers first), or set `shortage_policy: reject`."
    )


class SupplierStillNeeded(StockflowError):
    slug = "supplier-still-needed"
    title = "Supplier still needed"
    status = 409
    description = (
        "The supplier is the last active one of a product whose shortage policy is "
        "`backorder`, so it can be neither removed from the product nor deactivated. Add "
        "another supplier first, or switch the product to `shortage_policy: reject`."
    )


class UnsafeWebhookUrl(StockflowError):
    slug = "unsafe-webhook-url"
    title = "Unsafe webhook URL"
    status = 422
    description = (
        "Webhooks go only to https:// URLs whose host resolves to public addresses: never "
        "to loopback, private, link-local, unique-local or cloud metadata addresses. "
        "Development mode (STOCKFLOW_WEBHOOKS_ALLOW_PRIVATE) lifts this outside production."
    )


class DeliveryInFlight(StockflowError):
    slug = "delivery-in-flight"
    title = "Delivery in flight"
    status = 409
    description = (
        "A worker is sending this delivery right now; its result is written in a moment. "
        "Read the delivery again, then retry it if it still needs it."
    )


class InvalidSignature(StockflowError):
    slug = "invalid-signature"
    title = "Invalid signature"
    status = 401
    description = (
        "An inbound message must carry Standard Webhooks headers (`webhook-id`, "
        "`webhook-timestamp` within five minutes, `webhook-signature`) signed with the "
        "sender's signing secret."
    )


class PaymentProviderMismatch(StockflowError):
    slug = "payment-provider-mismatch"
    title = "Not paid through this provider"
    status = 409
    description = (
        "The order is paid through another payment provider than the one this operation "
        "uses (for example recording an offline payment for an order placed with Stripe, or "
        "asking for a PaymentIntent when payments are `manual` or off). `payment_provider` "
        "is the order's."
    )


class PaymentExceedsAmountDue(StockflowError):
    slug = "payment-exceeds-amount-due"
    title = "Payment exceeds the amount due"
    status = 422
    description = (
        "A recorded payment may not take more than the order still owes (`amount_due`), and "
        "an order that was cancelled owes nothing."
    )


class RefundExceedsPaid(StockflowError):
    slug = "refund-exceeds-paid"
    title = "Refund exceeds what was paid"
    status = 422
    description = (
        "Refunds of an order never add up to more than was paid for it. `refundable` is what "
        "may still be refunded: the amount paid less refunds made or in progress."
    )


class PaymentInProgress(StockflowError):
    slug = "payment-in-progress"
    title = "Payment request in progress"
    status = 409
    description = (
        "Another request about this order's payment is talking to the payment provider right "
        "now. Retry after the number of seconds in `Retry-After`: you will get its result."
    )

    def __init__(self, detail: str, *, retry_after_seconds: int = 1, **extensions: Any) -> None:
        super().__init__(detail, **extensions)
        self.retry_after_seconds = retry_after_seconds


class PaymentProviderUnavailable(StockflowError):
    slug = "payment-provider-unavailable"
    title = "Payment provider unavailable"
    status = 502
    description = (
        "The payment provider could not be reached, timed out or failed. Nothing was changed "
        "here, and nothing was charged twice: retry after the number of seconds in "
        "`Retry-After` (the provider is asked with the same idempotency key)."
    )

    def __init__(self, detail: str, *, retry_after_seconds: int = 5, **extensions: Any) -> None:
        super().__init__(detail, **extensions)
        self.retry_after_seconds = retry_after_seconds


class InvalidStripeSignature(StockflowError):
    slug = "invalid-stripe-signature"
    title = "Invalid Stripe signature"
    status = 400
    description = (
        "A request to `POST /v1/webhooks/stripe` does not carry a `Stripe-Signature` made "
        "with the endpoint's signing secret over the exact body within the last five "
        "minutes, or its body is not a Stripe event. Nothing was kept."
    )


class PaymentRefused(StockflowError):
    slug = "payment-refused"
    title = "Payment refused by the provider"
    status = 422
    description = (
        "Stripe refused to create the order's PaymentIntent for a reason of the request "
        "itself (an amount below its minimum, a currency the account does not take). "
        "Nothing was changed, and retrying the same request will not help. "
        "`provider_code` is Stripe's error code, when it gave one."
    )


class RateLimited(StockflowError):
    slug = "rate-limited"
    title = "Too many requests"
    status = 429
    description = (
        "The API key (or, for a request without a key, the client address) sent more "
        "requests than its limit allows in the window. Nothing was done. Retry after the "
        "number of seconds in `Retry-After`; `RateLimit-Policy` gives the limit and "
        "`RateLimit` what is left of it."
    )


class QuotaExceeded(StockflowError):
    slug = "quota-exceeded"
    title = "Customer quota exceeded"
    status = 429
    description = (
        "The order would take the customer past the most unpaid open orders, or the most "
        "units reserved for its open orders, that one customer may hold (so that no one "
        "can hoard stock). Nothing was reserved. Pay or cancel open orders, or ask the "
        "operator to raise the quota; `limit`, `current` and `requested` say which."
    )
