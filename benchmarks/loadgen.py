"""The asyncio load generator: a closed loop for maximum throughput, an open loop for latency
at a fixed offered rate. Both measure a fixed window after a warm-up, and read the CPU
counters at the window's edges."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from benchmarks import pacing
from benchmarks.httpclient import Connection, Response
from benchmarks.server import CpuSnapshot, Server
from benchmarks.stats import Sample, summarise
from benchmarks.workloads import Call, Workload

ERROR_PAUSE_S = 0.05


@dataclass
class Window:
    """One measured window: what was collected, how long it lasted, the CPU it cost."""

    sample: Sample
    duration_s: float
    cpu: dict[str, float]
    with_server: bool = True

    @classmethod
    def merged(cls, windows: list[Window]) -> Window:
        """Several windows of one load as one: requests, seconds and CPU added up."""
        sample = Sample()
        cpu: dict[str, float] = {}
        duration = sum(window.duration_s for window in windows)
        for window in windows:
            sample.latencies_s.extend(window.sample.latencies_s)
            sample.statuses.update(window.sample.statuses)
            sample.by_operation.update(window.sample.by_operation)
            for key, value in window.cpu.items():
                # Seconds add up; a share of the machine is averaged over the time.
                weight = window.duration_s / duration if key.endswith("_share") else 1.0
                cpu[key] = cpu.get(key, 0.0) + value * weight
        return cls(sample, duration, cpu, all(window.with_server for window in windows))

    def summary(self) -> dict[str, Any]:
        summary = summarise(self.sample, self.duration_s)
        summary["duration_s"] = self.duration_s
        summary["cpu"] = self.cpu
        done = summary["requests"]
        for part in ("server", "postgres", "generator"):
            seconds = self.cpu.get(f"{part}_s", 0.0)
            measured = done and (part != "server" or self.with_server)
            summary[f"{part}_cpu_ms_per_request"] = seconds * 1000.0 / done if measured else None
        return summary


async def _send(conn: Connection, call: Call) -> tuple[str, Response | None]:
    try:
        response = await conn.send(call.method, call.path, call.headers, call.body)
    except TimeoutError:
        return "timeout", None
    except (OSError, EOFError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
        return "conn", None
    return str(response.status), response


async def _meter(server: Server | None, start: float, end: float, out: dict[str, float]) -> None:
    await asyncio.sleep(max(0.0, start - time.perf_counter()))
    before = CpuSnapshot.take(server)
    await asyncio.sleep(max(0.0, end - time.perf_counter()))
    out.update(before.until(CpuSnapshot.take(server)))


async def closed_loop(
    workload: Workload,
    connect: Callable[[], Connection],
    *,
    concurrency: int,
    connections: int,
    warmup_s: float,
    duration_s: float,
    server: Server | None,
) -> Window:
    """``concurrency`` requests in flight, back to back, over ``connections`` keep-alive
    connections taken in turn (as a client's connection pool would).

    Each of the server's worker processes serves the connections it happened to accept,
    so with one connection per request in flight a chance split of eight connections (six
    to one worker, two to the other) would leave one worker saturated and the other idle.
    Over many connections taken in turn, the workers' shares even out.
    """
    start = time.perf_counter()
    measure_start = start + warmup_s
    measure_end = measure_start + duration_s
    sample = Sample()
    cpu: dict[str, float] = {}
    idle: asyncio.Queue[Connection] = asyncio.Queue()
    opened = [connect() for _ in range(max(connections, concurrency))]
    for conn in opened:
        idle.put_nowait(conn)

    async def worker() -> None:
        while time.perf_counter() < measure_end:
            conn = await idle.get()
            call = workload.next()
            sent = time.perf_counter()
            try:
                status, response = await _send(conn, call)
            finally:
                idle.put_nowait(conn)
            finished = time.perf_counter()
            if response is not None:
                workload.done(call, response)
            if sent >= measure_start and finished <= measure_end:
                sample.record(call.operation, status, finished - sent)
            if response is None:
                await asyncio.sleep(ERROR_PAUSE_S)

    meter = asyncio.create_task(_meter(server, measure_start, measure_end, cpu))
    try:
        # A worker that fails cancels the others before the connections close under them.
        async with asyncio.TaskGroup() as workers:
            for _ in range(concurrency):
                workers.create_task(worker())
        await meter
    finally:
        meter.cancel()
        for conn in opened:
            await conn.close()
    return Window(sample, duration_s, cpu, server is not None)


async def open_loop(
    workload: Workload,
    connect: Callable[[], Connection],
    *,
    rate_per_s: float,
    connections: int,
    warmup_s: float,
    duration_s: float,
    server: Server | None,
) -> Window:
    """Requests due on a fixed clock, ``rate_per_s`` a second, over up to ``connections``
    connections; latency counts from the due time, so waiting for a connection counts."""
    queue: asyncio.Queue[float | None] = asyncio.Queue()
    start = time.perf_counter()
    measure_start = start + warmup_s
    measure_end = measure_start + duration_s
    sample = Sample()
    cpu: dict[str, float] = {}

    async def produce() -> None:
        sent = 0
        while True:
            elapsed = time.perf_counter() - start
            if elapsed >= warmup_s + duration_s:
                break
            due = pacing.due_count(rate_per_s, elapsed)
            for index in range(sent, due):
                queue.put_nowait(start + pacing.due_at(index, rate_per_s))
            sent = due
            next_due = start + pacing.due_at(sent, rate_per_s)
            await asyncio.sleep(max(0.0, next_due - time.perf_counter()))
        for _ in range(connections):
            queue.put_nowait(None)

    async def worker() -> None:
        conn = connect()
        try:
            while (due := await queue.get()) is not None:
                call = workload.next()
                status, response = await _send(conn, call)
                finished = time.perf_counter()
                if response is not None:
                    workload.done(call, response)
                if measure_start <= due < measure_end:
                    sample.record(call.operation, status, finished - due)
        finally:
            await conn.close()

    meter = asyncio.create_task(_meter(server, measure_start, measure_end, cpu))
    await asyncio.gather(produce(), *(worker() for _ in range(connections)))
    await meter
    return Window(sample, duration_s, cpu, server is not None)
