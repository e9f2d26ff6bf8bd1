"""``stockflow serve`` as a separate process on loopback, and CPU time read from /proc.

The server is started in a session (process group) of its own, so stopping it, or killing
it after a failure, also reaches uvicorn's worker processes when it runs with several.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from benchmarks.seed import stockflow_command

READY_TIMEOUT_S = 60.0
_CHECKOUT = str(Path(__file__).resolve().parent.parent)
STOP_TIMEOUT_S = 15.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    host: str
    port: int
    log_path: Path

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def _signal_group(self, signum: int) -> None:
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signum)

    def stop(self) -> None:
        if self.process.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.process.wait(timeout=STOP_TIMEOUT_S)
        # Workers that outlived their supervisor, if any.
        self._signal_group(signal.SIGKILL)

    def cpu_seconds(self) -> float:
        """CPU time (user + system) of the server and every process below it, so far."""
        return tree_cpu_seconds(self.process.pid)


async def _ready(server: Server) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    request = f"GET /readyz HTTP/1.1\r\nHost: {server.host}\r\nConnection: close\r\n\r\n"
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"stockflow serve exited on start:\n{server.log_tail()}")
        with suppress(OSError, asyncio.IncompleteReadError):
            reader, writer = await asyncio.open_connection(server.host, server.port)
            try:
                writer.write(request.encode())
                status_line = await reader.readline()
            finally:
                writer.close()
            if status_line.split(b" ")[1:2] == [b"200"]:
                return
        await asyncio.sleep(0.1)
    raise RuntimeError(
        f"stockflow serve not ready within {READY_TIMEOUT_S} s:\n{server.log_tail()}"
    )


def _spawn(args: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        return subprocess.Popen(
            args,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: see Server.stop
        )


def bare_command(host: str, port: int, workers: int) -> list[str]:
    """The bare endpoint (`benchmarks.bare`) under uvicorn, as Stockflow is served."""
    return [
        sys.executable, "-m", "uvicorn", "--factory", "benchmarks.bare:create",
        "--host", host, "--port", str(port), "--workers", str(workers),
        "--log-level", "warning", "--no-access-log",
    ]  # fmt: skip


@asynccontextmanager
async def running(
    database_url: str,
    log_path: Path,
    *,
    workers: int,
    env: Mapping[str, str] | None = None,
    bare: bool = False,
) -> AsyncIterator[Server]:
    """``stockflow serve --no-migrate --workers N`` (or the bare endpoint) on a free loopback
    port, ready when yielded."""
    port = free_port()
    environment = {
        **os.environ,
        "STOCKFLOW_DATABASE_URL": database_url,
        "STOCKFLOW_HOST": "127.0.0.1",
        "STOCKFLOW_PORT": str(port),
        "STOCKFLOW_LOG_LEVEL": "warning",
        **(env or {}),
    }
    if bare:
        # `benchmarks` is imported from the checkout the harness runs from.
        environment["PYTHONPATH"] = os.pathsep.join(
            part for part in (_CHECKOUT, environment.get("PYTHONPATH", "")) if part
        )
        args = bare_command("127.0.0.1", port, workers)
    else:
        args = [*stockflow_command(), "serve", "--no-migrate", "--workers", str(workers)]
    process = await asyncio.to_thread(_spawn, args, environment, log_path)
    server = Server(process, "127.0.0.1", port, log_path)
    try:
        await _ready(server)
        yield server
    finally:
        await asyncio.to_thread(server.stop)


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses; it ends at the last ')'.
    return raw[raw.rfind(")") + 2 :].split()


def _cpu_of(fields: list[str]) -> float:
    # After the name: state is index 0, so utime (field 14) is 11 and stime (15) is 12.
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _processes() -> dict[int, tuple[int, str, list[str]]]:
    """pid -> (parent pid, command name, stat fields after the name)."""
    table: dict[int, tuple[int, str, list[str]]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        name = raw[raw.find("(") + 1 : raw.rfind(")")]
        fields = raw[raw.rfind(")") + 2 :].split()
        table[int(entry)] = (int(fields[1]), name, fields)
    return table


def tree_cpu_seconds(root: int) -> float:
    table = _processes()
    children: dict[int, list[int]] = {}
    for pid, (parent, _, _) in table.items():
        children.setdefault(parent, []).append(pid)
    total = 0.0
    stack = [root]
    while stack:
        pid = stack.pop()
        if pid in table:
            total += _cpu_of(table[pid][2])
        stack.extend(children.get(pid, []))
    return total


def postgres_cpu_seconds() -> float:
    """CPU time of every PostgreSQL process on this machine (the whole cluster)."""
    return sum(
        _cpu_of(fields) for _, name, fields in _processes().values() if name.startswith("postgres")
    )


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    first = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    values = [int(v) for v in first]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    total = sum(values[:8])
    return (total - idle) / CLOCK_TICKS, total / CLOCK_TICKS


@dataclass(frozen=True)
class CpuSnapshot:
    """CPU counters at one instant: server tree, PostgreSQL, this process, the machine."""

    server: float
    postgres: float
    generator: float
    machine_busy: float
    machine_total: float

    @classmethod
    def take(cls, server: Server | None) -> CpuSnapshot:
        busy, total = machine_busy()
        return cls(
            server=server.cpu_seconds() if server is not None else 0.0,
            postgres=postgres_cpu_seconds(),
            generator=time.process_time(),
            machine_busy=busy,
            machine_total=total,
        )

    def until(self, later: CpuSnapshot) -> dict[str, float]:
        """CPU seconds spent between this snapshot and ``later``, and the machine's load."""
        total = later.machine_total - self.machine_total
        return {
            "server_s": later.server - self.server,
            "postgres_s": later.postgres - self.postgres,
            "generator_s": later.generator - self.generator,
            "machine_busy_share": (
                (later.machine_busy - self.machine_busy) / total if total > 0 else 0.0
            ),
        }
