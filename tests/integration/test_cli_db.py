"""``stockflow db``: upgrade, current, check and downgrade against a real database."""

from __future__ import annotations

import asyncio
from pathlib import Path

from typer.testing import CliRunner, Result

from stockflow.cli.main import app as cli
from stockflow.db import migrate
from tests.support import empty_database


async def _invoke(url: str, *args: str) -> Result:
    def invoke() -> Result:
        return CliRunner().invoke(cli, list(args), env={"STOCKFLOW_DATABASE_URL": url})

    return await asyncio.to_thread(invoke)


async def test_db_commands(backend: str, tmp_path: Path) -> None:
    head = migrate.head_revision()
    async with empty_database(backend, tmp_path) as url:
        current = await _invoke(url, "db", "current")
        assert current.exit_code == 1
        assert "applied: none" in current.output

        assert (await _invoke(url, "db", "check")).exit_code == 1

        upgraded = await _invoke(url, "db", "upgrade")
        assert upgraded.exit_code == 0, upgraded.output
        current = await _invoke(url, "db", "current")
        assert current.exit_code == 0
        assert f"applied: {head}" in current.output

        checked = await _invoke(url, "db", "check")
        assert checked.exit_code == 0, checked.output
        assert "agree" in checked.output

        downgraded = await _invoke(url, "db", "downgrade", "base")
        assert downgraded.exit_code == 0, downgraded.output
        assert (await _invoke(url, "db", "current")).exit_code == 1


async def test_bad_configuration_is_reported_not_raised(tmp_path: Path) -> None:
    result = await _invoke("mysql://nope/db", "db", "current")
    assert result.exit_code == 2
    assert "configuration error" in result.output
