"""Helpers shared by the commands: settings, and running a coroutine with a database."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console

from stockflow.config import Settings
from stockflow.db.engine import Database
from stockflow.observability.logging import configure_logging

T = TypeVar("T")
console = Console()
err_console = Console(stderr=True)


def load_settings(**overrides: object) -> Settings:
    try:
        settings = Settings(**{k: v for k, v in overrides.items() if v is not None})  # type: ignore[arg-type]
    except ValidationError as exc:
        for error in exc.errors():
            err_console.print(f"[red]configuration error:[/red] {error['msg']}")
        raise typer.Exit(2) from exc
    configure_logging(settings)
    return settings


def run_with_database(settings: Settings, work: Callable[[Database], Awaitable[T]]) -> T:
    async def runner() -> T:
        database = Database(settings)
        try:
            return await work(database)
        finally:
            await database.dispose()

    return asyncio.run(runner())
