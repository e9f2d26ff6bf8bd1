"""The e-mails events turn into: a purchase order for an e-mail supplier (readable text
plus a CSV of its lines), and notices to customers. Pure: built from the event's object
(the resource as the API shows it), no I/O."""

from __future__ import annotations

import csv
import io
from email.message import EmailMessage
from typing import Any

CSV_COLUMNS = ("line", "supplier_sku", "sku", "quantity", "unit_cost", "currency")

# ISO 4217 currencies whose minor unit is not a hundredth (the rest have two decimals).
_ZERO_DECIMALS = "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF"
_THREE_DECIMALS = "BHD IQD JOD KWD LYD OMR TND"
_DECIMALS = {
    **dict.fromkeys(_ZERO_DECIMALS.split(), 0),
    **dict.fromkeys(_THREE_DECIMALS.split(), 3),
    "CLF": 4,
    "UYW": 4,
}


def amount(minor: int, currency: str) -> str:
    """Minor units as the decimal amount people read (1290 EUR -> ``12.90``)."""
    decimals = _DECIMALS.get(currency, 2)
    sign = "-" if minor < 0 else ""
    whole, fraction = divmod(abs(minor), 10**decimals)
    return f"{sign}{whole:,}" + (f".{fraction:0{decimals}d}" if decimals else "")


def _money(minor: int, currency: str) -> str:
    return f"{amount(minor, currency)} {currency}"


def _cell(value: object) -> str:
    """A CSV cell that a spreadsheet shows as text: one starting like a formula would run."""
    text = str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def purchase_order_csv(po: dict[str, Any]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for number, line in enumerate(po["lines"], start=1):
        writer.writerow(
            (
                number,
                _cell(line["supplier_sku"]),
                _cell(line["sku"]),
                line["quantity"],
                amount(line["cost_price"], line["currency"]).replace(",", ""),
                line["currency"],
            )
        )
    return out.getvalue()


def purchase_order_email(
    po: dict[str, Any], *, supplier_name: str, to: str, event_id: str
) -> EmailMessage:
    lines = po["lines"]
    width = max((len(line["supplier_sku"]) for line in lines), default=10)
    rows = [
        f"  {line['supplier_sku']:<{width}}  {line['quantity']:>8}  x "
        f"{_money(line['cost_price'], line['currency'])}"
        for line in lines
    ]
    text = "\n".join(
        [
            f"Dear {supplier_name},",
            "",
            f"Please supply the following (purchase order {po['id']}):",
            "",
            f"  {'Your SKU':<{width}}  {'Quantity':>8}    Unit cost",
            *rows,
            "",
            "Please acknowledge with your expected delivery date, quoting the purchase "
            "order number. The lines are attached as CSV.",
            *(["", f"Note: {po['note']}"] if po.get("note") else []),
        ]
    )
    message = EmailMessage()
    message["To"] = to
    message["Subject"] = f"Purchase order {po['id']}"
    # The event id: a resend after a failure is recognisable as the same message.
    message["Message-ID"] = f"<{event_id}@stockflow>"
    message.set_content(text)
    message.add_attachment(
        purchase_order_csv(po).encode(),
        maintype="text",
        subtype="csv",
        filename=f"{po['id']}.csv",
    )
    return message


def _order_lines(order: dict[str, Any]) -> list[str]:
    return [
        f"  {line['quantity']} x {line['sku']}  {_money(line['line_total'], order['currency'])}"
        for line in order["lines"]
    ]


def order_confirmation(
    order: dict[str, Any], *, customer_name: str, to: str, event_id: str
) -> EmailMessage:
    waiting = [line for line in order["lines"] if line["backordered"] > 0]
    text = [
        f"Hello {customer_name},",
        "",
        f"Thank you for your order {order['id']}:",
        "",
        *_order_lines(order),
        "",
        f"Total: {_money(order['total'], order['currency'])}",
    ]
    if waiting:
        text += ["", "Some items are on their way to us; we will write again when all is ready:"]
        text += [
            f"  {line['sku']}: {line['backordered']} expected by "
            f"{line['expected_available_date'] or 'a date we will confirm'}"
            for line in waiting
        ]
    message = EmailMessage()
    message["To"] = to
    message["Subject"] = f"Your order {order['id']}"
    message["Message-ID"] = f"<{event_id}@stockflow>"
    message.set_content("\n".join(text))
    return message


def ready_to_ship_notice(
    order: dict[str, Any], *, customer_name: str, to: str, event_id: str
) -> EmailMessage:
    text = [
        f"Hello {customer_name},",
        "",
        f"Everything in your order {order['id']} is now in stock and ready to ship:",
        "",
        *_order_lines(order),
    ]
    message = EmailMessage()
    message["To"] = to
    message["Subject"] = f"Your order {order['id']} is ready to ship"
    message["Message-ID"] = f"<{event_id}@stockflow>"
    message.set_content("\n".join(text))
    return message
