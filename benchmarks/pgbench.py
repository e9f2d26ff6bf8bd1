"""pgbench, when the machine has it: the captured order as a script, same client count."""

from __future__ import annotations

import asyncio
import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from benchmarks import catalog
from benchmarks.replay import Template, parse_pgbench, pgbench_script
from benchmarks.seed import plain_dsn
from stockflow.db.engine import POSTGRESQL_SESSION_SETTINGS


def find_pgbench() -> str | None:
    found = shutil.which("pgbench")
    if found:
        return found
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pgbench"), reverse=True)
    return candidates[0] if candidates else None


def _run(command: list[str]) -> subprocess.CompletedProcess[str]:
    # The session settings Stockflow's own connections use, so both run the same plans.
    options = " ".join(f"-c {name}={value}" for name, value in POSTGRESQL_SESSION_SETTINGS.items())
    environment = {**os.environ, "PGOPTIONS": options}
    return subprocess.run(command, capture_output=True, text=True, check=False, env=environment)


def _write(script: str, *paths: Path | None) -> None:
    for path in paths:
        if path is not None:
            path.write_text(script)


async def run_pgbench(
    url: str,
    template: Template,
    r: catalog.Range,
    *,
    clients: int,
    warmup_s: float,
    duration_s: float,
    keep_script: Path | None = None,
) -> dict[str, Any]:
    """Run the script for ``warmup_s`` (discarded), then for ``duration_s``; tps of the second."""
    binary = find_pgbench()
    if binary is None:
        return {"available": False, "note": "pgbench not available"}
    script = pgbench_script(template, r)
    threads = max(1, min(clients, os.cpu_count() or 1))
    with tempfile.TemporaryDirectory(prefix="stockflow-pgbench-") as tmp:
        path = Path(tmp) / "order.sql"
        await asyncio.to_thread(_write, script, path, keep_script)
        base = [binary, "-n", "-M", "prepared", "-c", str(clients), "-j", str(threads)]
        target = [f"--file={path}", plain_dsn(url)]
        if warmup_s >= 1:
            await asyncio.to_thread(_run, [*base, "-T", str(round(warmup_s)), *target])
        result = await asyncio.to_thread(
            _run, [*base, "-T", str(max(1, round(duration_s))), *target]
        )
    figures: dict[str, Any] = {"available": True, **parse_pgbench(result.stdout)}
    figures["clients"] = clients
    figures["threads"] = threads
    figures["duration_s"] = max(1, round(duration_s))
    if result.returncode != 0 or figures["tps"] is None:
        figures["error"] = (result.stderr or result.stdout).strip()[-2000:]
    return figures
