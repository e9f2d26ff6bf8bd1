"""What the log's last step removes, and what it leaves alone; and when tracing is on."""

from __future__ import annotations

import logging

import pytest

from stockflow.api.middleware import route_template
from stockflow.config import Settings
from stockflow.observability import metrics, tracing
from stockflow.observability.logging import REDACTED, configure_logging, redact


def _line(**fields: object) -> dict[str, object]:
    return dict(redact(None, "info", dict(fields)))


@pytest.mark.parametrize(
    "text",
    [
        "sf_0123456789abcdefghijABCDEFGHIJ",
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "sk_live_51HxYzAbCdEfGh",
        "rk_test_abcdefghijkl",
        "Bearer anything-at-all.123",
    ],
)
def test_secrets_are_removed_from_any_text(text: str) -> None:
    line = _line(event="failed", error=f"while calling with {text}: refused", nested={"a": [text]})
    assert text not in str(line)
    assert REDACTED in str(line["error"])


@pytest.mark.parametrize(
    "field", ["secret", "stripe_secret_key", "smtp_password", "api_key", "authorization", "token"]
)
def test_fields_named_as_secrets_are_removed_whatever_they_hold(field: str) -> None:
    assert _line(**{field: "plain words"})[field] == REDACTED


@pytest.mark.parametrize(
    "email", ["ann@example.com", "first.last+tag@mail.shop.example", "x_y@sub-domain.co.uk"]
)
def test_e_mail_addresses_become_a_placeholder(email: str) -> None:
    line = _line(event="mail_failed", error=f"550 <{email}>: mailbox unavailable")
    assert line["error"] == "550 <[email]>: mailbox unavailable"


def test_ordinary_fields_pass_unchanged() -> None:
    fields = {
        "event": "request",
        "route": "/v1/orders/{order_id}",
        "status": 201,
        "duration_ms": 3.2,
        "lease_token": "lse_01ABC",
        "key_prefix": "sf_ab12cd3",
        "ok": True,
        "nothing": None,
    }
    assert _line(**fields) == fields


@pytest.mark.parametrize(
    ("environ", "wanted"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "https://otlp.nr-data.net"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x"}, False),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x"}, False),
        ({"OTEL_SERVICE_NAME": "stockflow"}, False),
    ],
)
def test_tracing_is_on_only_when_the_environment_names_an_exporter(
    environ: dict[str, str], wanted: bool
) -> None:
    assert tracing.wanted(environ) is wanted
    assert (tracing.provider_from_environment(environ) is not None) is wanted


class Route:
    def __init__(self, path_format: str) -> None:
        self.path_format = path_format


@pytest.mark.parametrize(
    ("path", "declared", "template"),
    [
        ("/v1/orders", "/orders", "/v1/orders"),
        ("/v1/orders/ord_1/cancel", "/orders/{order_id}/cancel", "/v1/orders/{order_id}/cancel"),
        ("/readyz", "/readyz", "/readyz"),
        ("/v1/orders", "/v1/orders", "/v1/orders"),
    ],
)
def test_the_route_label_is_the_full_template(path: str, declared: str, template: str) -> None:
    assert route_template({"path": path, "route": Route(declared)}) == template


def test_a_path_no_route_matched_has_one_label() -> None:
    assert route_template({"path": "/v1/nothing/here/123"}) == metrics.UNMATCHED_ROUTE


@pytest.mark.parametrize("email", ["ann@exämple.com", "jörg@example.de", "李@例え.jp"])
def test_international_addresses_are_removed_too(email: str) -> None:
    line = _line(event="mail_failed", error=f"recipient {email} refused")
    assert line["error"] == "recipient [email] refused"


def test_standard_library_lines_pass_the_same_redaction(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging(Settings(log_level="info"))
    try:
        raise ValueError("key sf_0123456789abcdefghijABCDEF rejected for bob@example.org")
    except ValueError:
        # (uvicorn's own loggers are ours in `stockflow serve`, which passes log_config=None;
        # in this process, loopback servers of other tests have configured them.)
        logging.getLogger("asyncio").exception("Exception in ASGI application")
    logging.getLogger("sqlalchemy.engine").info("params ('ann@example.com', 'whsec_abcdefghijkl')")
    written = capsys.readouterr().err
    assert "Exception in ASGI application" in written
    assert "ValueError: key [redacted] rejected for [email]" in written
    for secret in ("sf_0123456789", "bob@example.org", "ann@example.com", "whsec_abcdefghijkl"):
        assert secret not in written


def test_an_otlp_protocol_other_than_http_is_refused_at_start() -> None:
    environ = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4317",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
    }
    with pytest.raises(ValueError, match="not supported"):
        tracing.provider_from_environment(environ)
