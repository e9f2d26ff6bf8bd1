"""Structured logging: JSON lines in production, readable lines in development.

The request id lives in a context variable, so every line logged while serving a request
carries it without being passed around; with tracing on, so do the trace and span ids.
Every line passes through `redact` last before rendering: secrets (API keys, webhook and
Stripe secrets, passwords, tokens) and e-mail addresses never reach the log, wherever in
the line (a field, an error message, a traceback) they turn up.
"""

from __future__ import annotations

import functools
import logging
import re
import sys
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any

import structlog

from stockflow.config import Environment, Settings
from stockflow.observability import tracing

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

REDACTED = "[redacted]"
# Fields whose values are secret by their name, whatever they hold.
_SECRET_FIELD = re.compile(
    r"secret|password|passwd|token|api_?key|authorization|signature|credential", re.IGNORECASE
)
# Fields that merely mention such a word and hold nothing secret.
_OPEN_FIELDS = frozenset({"lease_token"})
_SECRET_VALUE = re.compile(
    r"\bsf_[0-9A-Za-z]{16,}"  # Stockflow API keys
    r"|\bwhsec_[A-Za-z0-9+/=]{8,}"  # webhook signing secrets (ours and Stripe's)
    r"|\b(?:sk|rk|pk)_(?:live|test)_[0-9A-Za-z]{8,}"  # Stripe API keys
    r"|\bBearer\s+[^\s\"',]+",
    re.IGNORECASE,
)
# Any address an e-mail field accepts, international ones included: a run of characters
# that are not space or punctuation around an "@", with a dot after it.
_EMAIL = re.compile(r"""[^\s<>()\[\]{},;:"'@]+@[^\s<>()\[\]{},;:"'@]+\.[^\s<>()\[\]{},;:"'@]+""")


# Every secret pattern above contains one of these (lower-cased): most strings contain
# none, and are passed by a few substring tests instead of a regular expression.
_SECRET_MARKERS = ("sf_", "whsec_", "_live_", "_test_", "bearer")


def scrub(value: Any) -> Any:
    """``value`` with secrets and e-mail addresses replaced, in strings at any depth."""
    if isinstance(value, str):
        if "@" in value:
            value = _EMAIL.sub("[email]", value)
        lowered = value.lower()
        if any(marker in lowered for marker in _SECRET_MARKERS):
            value = _SECRET_VALUE.sub(REDACTED, value)
        return value
    if isinstance(value, Mapping):
        return {key: _scrub_field(str(key), item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [scrub(item) for item in value]
    if isinstance(value, int | float | bool) or value is None:
        return value
    return scrub(str(value))


@functools.lru_cache(maxsize=1024)
def _secret_field(key: str) -> bool:
    return key not in _OPEN_FIELDS and _SECRET_FIELD.search(key) is not None


def _scrub_field(key: str, value: Any) -> Any:
    if value is not None and _secret_field(key):
        return REDACTED
    return scrub(value)


def redact(
    _logger: object, _method: str, event_dict: structlog.types.EventDict
) -> structlog.types.EventDict:
    return {key: _scrub_field(key, value) for key, value in event_dict.items()}


def _add_request_id(
    _logger: object, _method: str, event_dict: structlog.types.EventDict
) -> structlog.types.EventDict:
    request_id = request_id_var.get()
    if request_id is not None:
        event_dict.setdefault("request_id", request_id)
    ids = tracing.current_ids()
    if ids is not None:
        event_dict.setdefault("trace_id", ids[0])
        event_dict.setdefault("span_id", ids[1])
    return event_dict


def _current_stderr_logger(*_args: object) -> structlog.PrintLogger:
    return structlog.PrintLogger(file=sys.stderr)


_info_enabled = True


def info_enabled() -> bool:
    """Whether info lines are written: a caller on the hot path skips building one that
    would be dropped (a filtered call still costs a logger's construction)."""
    return _info_enabled


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time, like the structlog side."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def _route_standard_logging(
    level: int, shared: list[structlog.types.Processor], renderer: structlog.types.Processor
) -> None:
    """Lines from the standard library's logging (uvicorn, SQLAlchemy, asyncio, the
    OpenTelemetry exporter) are rendered by the same chain, redaction included."""
    handler = _StderrHandler()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                redact,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _StderrHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # A line per HTTP request the service makes would repeat the deliveries' own lines, with
    # receivers' full URLs (query strings included) that redaction cannot know to be secret.
    for chatty in ("httpx", "httpcore"):
        logging.getLogger(chatty).setLevel(max(level, logging.WARNING))


def configure_logging(settings: Settings) -> None:
    global _info_enabled
    level = logging.getLevelNamesMapping()[settings.log_level.upper()]
    _info_enabled = level <= logging.INFO
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if settings.environment is Environment.PRODUCTION
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        _add_request_id,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    _route_standard_logging(level, shared, renderer)
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.format_exc_info,
            redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        # Resolved per use rather than bound now, so a replaced stderr (a test runner's
        # capture, a daemonised process) is followed rather than written to after closing.
        logger_factory=_current_stderr_logger,
        cache_logger_on_first_use=False,
    )


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger
