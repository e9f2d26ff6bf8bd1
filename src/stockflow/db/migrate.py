"""Alembic driven from code, so the CLI, the server start-up and the tests share one path."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

import stockflow


def _script_location() -> Path:
    # Installed wheels carry the migrations inside the package; a source checkout keeps
    # them at the repository root.
    packaged = Path(stockflow.__file__).parent / "migrations"
    if packaged.is_dir():
        return packaged
    return Path(stockflow.__file__).resolve().parents[2] / "migrations"


def alembic_config(database_url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_script_location()))
    if database_url is not None:
        config.attributes["database_url"] = database_url
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError("no migrations found")
    return head


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str) -> None:
    command.downgrade(alembic_config(database_url), revision)


async def current_revision(connection: AsyncConnection) -> str | None:
    def _current(sync_connection: object) -> str | None:
        context = MigrationContext.configure(sync_connection)  # type: ignore[arg-type]
        return context.get_current_revision()

    return await connection.run_sync(_current)


async def schema_differences(connection: AsyncConnection) -> list[object]:
    """What autogenerate would change: empty when the models and the migrations agree."""
    from alembic.autogenerate import compare_metadata

    from stockflow.db.base import Base
    from stockflow.db.models import __all__ as _all_models  # noqa: F401  (registers tables)

    def _compare(sync_connection: object) -> list[object]:
        context = MigrationContext.configure(
            sync_connection,  # type: ignore[arg-type]
            opts={"compare_type": True, "compare_server_default": True},
        )
        return list(compare_metadata(context, Base.metadata))

    return await connection.run_sync(_compare)


async def probe(engine: AsyncEngine) -> str | None:
    """Round-trip to the database and return its applied revision; raises if unreachable."""
    async with engine.connect() as connection:
        await connection.execute(text("SELECT 1"))
        return await current_revision(connection)
