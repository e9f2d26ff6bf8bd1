from __future__ import annotations

import pytest
from pydantic import ValidationError

from stockflow.config import DEFAULT_SQLITE_URL, Environment, Settings


def test_defaults_to_a_sqlite_file_under_var(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STOCKFLOW_DATABASE_URL", raising=False)
    settings = Settings(_env_file=None)
    assert settings.database_url == DEFAULT_SQLITE_URL
    assert settings.is_sqlite
    assert settings.sqlite_path is not None
    assert settings.sqlite_path.parts[:2] == ("var", "stockflow.db")
    assert settings.environment is Environment.DEVELOPMENT
    # `make run` serves here, as the README's quick start says.
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql://u@h:5432/db", "postgresql+asyncpg://u@h:5432/db"),
        ("postgres://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("postgresql+asyncpg://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("sqlite:///./x.db", "sqlite+aiosqlite:///./x.db"),
        (
            "postgresql://u:p%40ss@h/db?sslmode=require",
            "postgresql+asyncpg://u:p%40ss@h/db?ssl=require",
        ),
        ("postgresql+asyncpg://u@h/db?sslmode=disable", "postgresql+asyncpg://u@h/db?ssl=disable"),
    ],
)
def test_plain_database_urls_are_accepted(given: str, expected: str) -> None:
    assert Settings(database_url=given).database_url == expected


def test_unknown_database_scheme_is_refused() -> None:
    with pytest.raises(ValidationError, match="postgresql:// or sqlite://"):
        Settings(database_url="mysql://u@h/db")


def test_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOCKFLOW_PORT", "9123")
    monkeypatch.setenv("STOCKFLOW_LOG_LEVEL", "debug")
    settings = Settings()
    assert settings.port == 9123
    assert settings.log_level == "debug"


def test_production_refuses_sqlite() -> None:
    with pytest.raises(ValidationError, match="production requires PostgreSQL"):
        Settings(environment="production", secret_key="s3cret-for-real")


def test_production_refuses_the_default_secret() -> None:
    with pytest.raises(ValidationError, match="STOCKFLOW_SECRET_KEY"):
        Settings(environment="production", database_url="postgresql://u@h/db")


def test_production_with_postgres_and_a_secret_starts() -> None:
    settings = Settings(
        environment="production",
        database_url="postgresql://u@h/db",
        secret_key="a-real-secret",
    )
    assert not settings.is_sqlite


def test_a_delivery_lease_must_outlive_an_attempt() -> None:
    with pytest.raises(ValidationError, match="LEASE"):
        Settings(delivery_lease_seconds=5, webhook_timeout_seconds=10)
    Settings(delivery_lease_seconds=11, webhook_timeout_seconds=10)  # mail off: SMTP's is moot
    with pytest.raises(ValidationError, match="SMTP"):
        Settings(delivery_lease_seconds=11, webhook_timeout_seconds=10, smtp_host="mail.example")


def test_production_refuses_private_webhook_addresses() -> None:
    with pytest.raises(ValidationError, match="ALLOW_PRIVATE"):
        Settings(
            environment="production",
            database_url="postgresql://db/stockflow",
            secret_key="s3cret-enough",
            webhooks_allow_private=True,
        )
