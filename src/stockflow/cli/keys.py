"""``stockflow keys``: issue, list and revoke API keys from the command line."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.table import Table

from stockflow.auth import service
from stockflow.auth.roles import Principal, Role
from stockflow.auth.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyRead, ApiKeyRotate
from stockflow.cli._common import console, err_console, load_settings, run_with_database
from stockflow.db.engine import Database
from stockflow.errors import StockflowError

app = typer.Typer(help="Issue, list, rotate and revoke API keys.", no_args_is_help=True)


@app.command()
def create(
    role: Annotated[Role, typer.Option(help="What the key may do.")],
    name: Annotated[str, typer.Option(help="Who or what uses the key.")],
    customer: Annotated[
        str | None, typer.Option(help="Customer id; required for the customer role.")
    ] = None,
    expires_in_days: Annotated[
        int | None,
        typer.Option(min=1, max=3650, help="Days until the key stops working (default: never)."),
    ] = None,
) -> None:
    """Create a key and print it. The key is shown once; only its hash is stored."""
    expires_at = datetime.now(UTC) + timedelta(days=expires_in_days) if expires_in_days else None
    try:
        data = ApiKeyCreate(name=name, role=role, customer_id=customer, expires_at=expires_at)
    except ValidationError as exc:
        err_console.print(f"[red]{exc.errors()[0]['msg']}[/red]")
        raise typer.Exit(2) from exc

    async def work(database: Database) -> ApiKeyCreated:
        async with database.transaction() as session:
            return await service.create_key(session, actor=Principal.command_line(), data=data)

    try:
        created = run_with_database(load_settings(), work)
    except StockflowError as exc:
        err_console.print(f"[red]{exc.detail}[/red]")
        raise typer.Exit(1) from exc
    err_console.print(f"created {created.role} key {created.id} ({created.name})")
    console.print(created.key, soft_wrap=True, highlight=False)


@app.command(name="list")
def list_keys(
    include_revoked: Annotated[bool, typer.Option(help="Also show revoked keys.")] = False,
) -> None:
    """List keys, newest first (never the keys themselves)."""

    async def work(database: Database) -> list[ApiKeyRead]:
        keys: list[ApiKeyRead] = []
        cursor: str | None = None
        async with database.transaction(write=False) as session:
            while True:
                page = await service.list_keys(
                    session, limit=100, cursor=cursor, include_revoked=include_revoked
                )
                keys.extend(page.items)
                if page.next_cursor is None:
                    return keys
                cursor = page.next_cursor

    table = Table("id", "prefix", "role", "name", "customer", "last used", "expires", "revoked")
    for key in run_with_database(load_settings(), work):
        table.add_row(
            key.id,
            key.prefix,
            key.role,
            key.name,
            key.customer_id or "",
            _when(key.last_used_at),
            _when(key.expires_at),
            _when(key.revoked_at),
        )
    # Never shrink the table to the terminal: Rich would cut the ids to "key_01M8M…" at 80
    # columns, and the id is what `keys revoke` needs. A narrow terminal wraps the lines.
    natural = console.measure(table, options=console.options.update_width(10_000)).maximum
    if natural > console.width:
        table.width = natural
    console.print(table, crop=False)


def _when(moment: datetime | None) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds") if moment is not None else ""


@app.command()
def revoke(key_id: Annotated[str, typer.Argument(help="The key's id (key_...).")]) -> None:
    """Revoke a key; it is refused from the next request on."""

    async def work(database: Database) -> ApiKeyRead:
        async with database.transaction() as session:
            return await service.revoke_key(session, actor=Principal.command_line(), key_id=key_id)

    try:
        key = run_with_database(load_settings(), work)
    except StockflowError as exc:
        err_console.print(f"[red]{exc.detail}[/red]")
        raise typer.Exit(1) from exc
    console.print(f"revoked {key.id} at {_when(key.revoked_at)}")


@app.command()
def rotate(
    key_id: Annotated[str, typer.Argument(help="The key's id (key_...).")],
    grace_seconds: Annotated[
        int,
        typer.Option(
            min=0,
            max=30 * 86_400,
            help="Seconds the old key keeps working beside the new one (0: none).",
        ),
    ] = 86_400,
) -> None:
    """Issue a new key with the old one's name, role and customer, and print it (shown
    once). The old key is refused once the grace period ends."""

    async def work(database: Database) -> ApiKeyCreated:
        async with database.transaction() as session:
            return await service.rotate_key(
                session,
                actor=Principal.command_line(),
                key_id=key_id,
                data=ApiKeyRotate(grace_seconds=grace_seconds),
            )

    try:
        created = run_with_database(load_settings(), work)
    except StockflowError as exc:
        err_console.print(f"[red]{exc.detail}[/red]")
        raise typer.Exit(1) from exc
    err_console.print(
        f"rotated {key_id} to {created.id}; the old key works for {grace_seconds} more seconds"
    )
    console.print(created.key, soft_wrap=True, highlight=False)
