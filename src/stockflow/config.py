"""Runtime settings, read from the environment (prefix ``STOCKFLOW_``) and an optional ``.env``."""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Literal

from limits import RateLimitItem, parse
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

DEFAULT_SQLITE_URL = "sqlite+aiosqlite:///./var/stockflow.db"
DEFAULT_SECRET = "change-me"  # noqa: S105  (the placeholder production refuses)


def parse_limit(value: str) -> RateLimitItem:
    """One limit in the ``limits`` notation (``600/minute``, ``20/second``)."""
    item = parse(value)
    if item.amount < 1:
        raise ValueError(f"{value!r}: a limit allows at least one request")
    return item


def storage_uri(value: str) -> str:
    """The asyncio storage for a ``memory://`` or ``redis://`` (``rediss://``) setting."""
    scheme, separator, _rest = value.partition("://")
    if not separator or scheme not in {"memory", "redis", "rediss", "redis+sentinel"}:
        raise ValueError(
            f"{value!r}: rate limit storage must be memory:// or a redis:// (rediss://) URL"
        )
    return "async+" + value


def _for_asyncpg(url: str) -> str:
    """libpq's ``sslmode`` (what hosting providers put in their URLs) is asyncpg's ``ssl``."""
    parsed = make_url(url)
    query = dict(parsed.query)
    if "sslmode" in query:
        query.setdefault("ssl", query.pop("sslmode"))
        parsed = parsed.set(query=query)
    return parsed.render_as_string(hide_password=False)


class Environment(StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


class Settings(BaseSettings):
    """Everything a deployment can tune; documented in the README's configuration table."""

    model_config = SettingsConfigDict(
        env_prefix="STOCKFLOW_", env_file=".env", extra="ignore", frozen=True
    )

    environment: Environment = Environment.DEVELOPMENT
    database_url: str = DEFAULT_SQLITE_URL
    database_pool_size: int = Field(default=10, ge=1, le=200)
    database_pool_recycle_seconds: int = Field(default=1800, ge=1)
    database_echo: bool = False
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # Webhook signing secrets are kept encrypted with a key derived from it, so production
    # must not start with the published default.
    secret_key: SecretStr = SecretStr(DEFAULT_SECRET)
    key_usage_interval_seconds: int = Field(default=60, ge=1)
    # Copied onto each new product that does not name its own shortage policy.
    default_shortage_policy: Literal["reject", "backorder"] = "reject"
    # A request body larger than this is refused with 413 before it is read in full.
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    max_lines_per_order: int = Field(default=100, ge=1, le=1000)
    max_quantity_per_line: int = Field(default=10_000, ge=1, le=1_000_000)
    idempotency_ttl_hours: int = Field(default=24, ge=1, le=24 * 30)
    # How long a duplicate waits for the request holding its key before answering 409.
    idempotency_wait_seconds: float = Field(default=10.0, gt=0, le=300)
    # How often the worker prunes data past its retention.
    maintenance_interval_seconds: int = Field(default=300, ge=1)
    # 0: each replenishment PO is submitted at once. Above 0: a supplier's shortages
    # collect on one draft PO, submitted once this many seconds have passed since it opened.
    po_consolidation_seconds: int = Field(default=0, ge=0, le=7 * 24 * 3600)
    # How often each server process looks for drafts whose window has closed.
    po_submit_interval_seconds: int = Field(default=10, ge=1, le=3600)
    # `stockflow serve` runs every background job (relay, housekeeping, submissions) in
    # each server process too; false leaves them to `stockflow worker` processes.
    worker_in_process: bool = True
    # Webhooks and supplier connectors may reach http:// and private addresses: for
    # development and tests only, refused in production.
    webhooks_allow_private: bool = False
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    webhook_concurrency: int = Field(default=16, ge=1, le=256)
    # A worker that dies mid-delivery holds it this long before another worker takes it.
    delivery_lease_seconds: float = Field(default=60.0, gt=0, le=3600)
    relay_poll_seconds: float = Field(default=0.5, gt=0, le=60)
    # Events whose deliveries are all finished (delivered or dead), with their delivery
    # logs, are pruned once they are this old.
    event_retention_days: int = Field(default=30, ge=1, le=3650)
    # Mail (purchase orders to e-mail suppliers, notices to customers): off until a host
    # is set.
    smtp_host: str | None = None
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_security: Literal["starttls", "tls", "none"] = "starttls"
    smtp_timeout_seconds: float = Field(default=20.0, gt=0, le=120)
    mail_from: str = "Stockflow <stockflow@localhost>"
    # Payments: `none` confirms every order at once; `manual` and `stripe` place orders as
    # `pending_payment` until they are paid (`manual`: staff record offline payments).
    payments: Literal["none", "manual", "stripe"] = "none"
    stripe_secret_key: SecretStr | None = None
    stripe_webhook_secret: SecretStr | None = None
    stripe_api_base: str = "https://api.stripe.com"
    stripe_timeout_seconds: float = Field(default=20.0, gt=0, le=120)
    # An order still unpaid this long after it was placed is cancelled by the worker
    # (seconds, or ISO 8601 such as PT30M).
    payment_timeout: timedelta = Field(default=timedelta(minutes=30), gt=timedelta(0))
    # How often the worker asks Stripe again for refunds it could not make at once.
    refund_retry_seconds: float = Field(default=30.0, gt=0, le=3600)
    # GET /metrics answers only with `Authorization: Bearer <this>` when set; open when not
    # (keep it off the public internet then: a proxy rule or a private listener).
    metrics_token: SecretStr | None = None
    # How often each worker writes its heartbeat; /readyz and /metrics report its age.
    worker_heartbeat_seconds: float = Field(default=15.0, gt=0, le=600)
    # Browser origins allowed to call the API (CORS), comma-separated; none by default.
    cors_allow_origins: str = ""
    # Whether those origins may send credentials (cookies, HTTP authentication); never
    # together with the wildcard origin.
    cors_allow_credentials: bool = False

    # Rate limits, in the `limits` notation (`600/minute`, `20/second`): one budget per API
    # key, and one per client address for requests without a valid key. The per-key default
    # lets one key place orders as fast as one instance can take them.
    rate_limit_per_key: str = "60000/minute"
    rate_limit_per_address: str = "300/minute"
    # Where the counters live: `memory://` (each process its own) or a redis:// URL, which
    # every instance shares.
    rate_limit_storage: str = "memory://"
    # What one customer may hold at once, so that no one can hoard stock: unpaid open
    # orders, and units reserved for its open orders. 0 turns a quota off.
    max_unpaid_orders_per_customer: int = Field(default=50, ge=0)
    max_reserved_units_per_customer: int = Field(default=100_000, ge=0)

    @field_validator("rate_limit_per_key", "rate_limit_per_address")
    @classmethod
    def _valid_rate_limit(cls, value: str) -> str:
        parse_limit(value)
        return value

    @field_validator("rate_limit_storage")
    @classmethod
    def _valid_rate_limit_storage(cls, value: str) -> str:
        storage_uri(value)
        return value

    @field_validator("database_url")
    @classmethod
    def _normalise_database_url(cls, value: str) -> str:
        # Operators paste the URL their provider gives them; map it to the async driver.
        for plain in ("postgres://", "postgresql://", "postgresql+psycopg://"):
            if value.startswith(plain):
                return _for_asyncpg("postgresql+asyncpg://" + value[len(plain) :])
        if value.startswith("sqlite:///") or value.startswith("sqlite://"):
            return "sqlite+aiosqlite" + value[len("sqlite") :]
        if value.startswith("postgresql+asyncpg://"):
            return _for_asyncpg(value)
        if value.startswith("sqlite+aiosqlite://"):
            return value
        raise ValueError("database_url must be a postgresql:// or sqlite:// URL")

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> Settings:
        if self.environment is Environment.PRODUCTION:
            if self.is_sqlite:
                raise ValueError("production requires PostgreSQL, not SQLite")
            if self.secret_key.get_secret_value() in ("", DEFAULT_SECRET):
                raise ValueError("production requires STOCKFLOW_SECRET_KEY to be set")
            if self.webhooks_allow_private:
                raise ValueError(
                    "STOCKFLOW_WEBHOOKS_ALLOW_PRIVATE is for development; production refuses it"
                )
            if self.database_echo:
                raise ValueError(
                    "STOCKFLOW_DATABASE_ECHO logs every statement with its values (customers' "
                    "data among them); production refuses it"
                )
            if self.log_level == "debug":
                raise ValueError(
                    "STOCKFLOW_LOG_LEVEL=debug is for development; production refuses it"
                )
            insecure = [o for o in self.cors_origins if o.startswith("http://")]
            if insecure:
                raise ValueError(
                    "production requires https CORS origins, not " + ", ".join(insecure)
                )
        if self.payments == "stripe":
            missing = [
                name
                for name, value in (
                    ("STOCKFLOW_STRIPE_SECRET_KEY", self.stripe_secret_key),
                    ("STOCKFLOW_STRIPE_WEBHOOK_SECRET", self.stripe_webhook_secret),
                )
                if value is None or not value.get_secret_value()
            ]
            if missing:
                raise ValueError("STOCKFLOW_PAYMENTS=stripe requires " + " and ".join(missing))
        for origin in self.cors_origins:
            if origin != "*" and not origin.startswith(("https://", "http://")):
                raise ValueError(
                    f"STOCKFLOW_CORS_ALLOW_ORIGINS: {origin!r} is not an http(s) origin"
                )
        if "*" in self.cors_origins and self.cors_allow_credentials:
            raise ValueError(
                "STOCKFLOW_CORS_ALLOW_CREDENTIALS cannot be used with the wildcard origin: "
                "list the origins that may send credentials"
            )
        if not self.stripe_api_base.startswith(("https://", "http://")):
            raise ValueError("STOCKFLOW_STRIPE_API_BASE must be an http(s) URL")
        if (
            self.environment is Environment.PRODUCTION
            and self.payments == "stripe"
            and not self.stripe_api_base.startswith("https://")
        ):
            raise ValueError("production requires an https STOCKFLOW_STRIPE_API_BASE")
        longest = self.webhook_timeout_seconds
        if self.smtp_host is not None:
            longest = max(longest, self.smtp_timeout_seconds)
        if self.delivery_lease_seconds <= longest:
            raise ValueError(
                "STOCKFLOW_DELIVERY_LEASE_SECONDS must exceed STOCKFLOW_WEBHOOK_TIMEOUT_SECONDS "
                "(and STOCKFLOW_SMTP_TIMEOUT_SECONDS when mail is on): a lease must outlive "
                "the attempt it covers"
            )
        return self

    @property
    def cors_origins(self) -> list[str]:
        return [o.strip().rstrip("/") for o in self.cors_allow_origins.split(",") if o.strip()]

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @cached_property
    def sqlite_path(self) -> Path | None:
        """The database file, or None for PostgreSQL and in-memory SQLite."""
        if not self.is_sqlite:
            return None
        path = self.database_url.split(":///", 1)[1] if ":///" in self.database_url else ""
        if not path or path == ":memory:":
            return None
        return Path(path)
