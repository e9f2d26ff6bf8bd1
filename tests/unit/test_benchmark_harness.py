"""The benchmark harness's pure parts: percentiles, the fixed-rate schedule, and how the
ceiling replay turns one captured order into fresh orders that never collide."""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import random
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest

from benchmarks import catalog, runner
from benchmarks.bare import order_id_slot
from benchmarks.capture import Step, counts
from benchmarks.httpclient import RawConnection, Response, encode_request, parse_head
from benchmarks.loadgen import Window, closed_loop
from benchmarks.pacing import due_at, due_count, schedule
from benchmarks.replay import (
    ID_PATTERN,
    FreshIds,
    Slot,
    Template,
    build_template,
    instantiate,
    parse_pgbench,
    pgbench_script,
    pick_products,
)
from benchmarks.report import render
from benchmarks.stats import Sample, is_success, latency_summary, percentile, summarise
from benchmarks.workloads import Call, order_body, ship_body

# --- percentiles -------------------------------------------------------------------------


def test_percentile_interpolates_between_ranks() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 90) == pytest.approx(90.1)
    assert percentile(values, 99) == pytest.approx(99.01)
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 100.0


def test_percentile_of_one_and_of_none() -> None:
    assert percentile([7.0], 99) == 7.0
    assert math.isnan(percentile([], 50))
    with pytest.raises(ValueError, match=r"within 0\.\.100"):
        percentile([1.0], 101)


def test_latency_summary_is_in_milliseconds() -> None:
    summary = latency_summary([0.004, 0.001, 0.002, 0.003])
    assert summary["p50_ms"] == pytest.approx(2.5)
    assert summary["max_ms"] == pytest.approx(4.0)
    assert summary["mean_ms"] == pytest.approx(2.5)


def test_summary_counts_errors_by_status_and_times_only_successes() -> None:
    sample = Sample()
    sample.record("order", "201", 0.010)
    sample.record("order", "201", 0.020)
    sample.record("order", "409", 5.0)
    sample.record("order", "conn", 9.0)
    summary = summarise(sample, duration_s=2.0)
    assert summary["throughput_per_s"] == 1.0
    assert summary["errors"] == {"409": 1, "conn": 1}
    assert summary["error_count"] == 2
    assert summary["latency"]["max_ms"] == pytest.approx(20.0)
    assert is_success("ok")
    assert not is_success("sqlstate 40P01")


# --- fixed-rate schedule -----------------------------------------------------------------


def test_schedule_is_evenly_spaced_at_the_rate() -> None:
    times = schedule(200.0, 2.0)
    assert len(times) == 400
    assert times[0] == 0.0
    gaps = {round(b - a, 9) for a, b in itertools.pairwise(times)}
    assert gaps == {0.005}
    assert times[-1] < 2.0


def test_due_count_includes_the_request_at_zero() -> None:
    assert due_count(100.0, -0.1) == 0
    assert due_count(100.0, 0.0) == 1
    assert due_count(100.0, 0.0099) == 1
    assert due_count(100.0, 0.01) == 2
    assert due_count(100.0, 1.0) == 101
    assert due_at(250, 100.0) == pytest.approx(2.5)
    with pytest.raises(ValueError, match="positive"):
        due_at(1, 0.0)


# --- replay: ids and products ------------------------------------------------------------

R = catalog.regular(9_000)
ORDER = "ord_01M8MN9JE6XZ6749P57GC5PXP2"
LINES = ["oli_01M8MN9JE6XZ6749P57GC5PXP3", "oli_01M8MN9JE6XZ6749P57GC5PXP4"]
MOVES = ["mov_01M8MN9JE6XZ6749P57GC5PXP6", "mov_01M8MN9JE6XZ6749P57GC5PXP7"]
CUSTOMER = "cus_01M8MN9HGZ393CQEYZ46RTMNYA"
KEY_ID = "key_01M8MN9HH6Y7ME3PJ97K3G7TP7"
LOCATION = "loc_01M8MN9H8BJM8S40RVR3CHXQVZ"
IDEMPOTENCY_KEY = "bench-capture-0123456789abcdef"
PRODUCTS = [(R.product_id(100), R.sku(100)), (R.product_id(5000), R.sku(5000))]
NOW = datetime(2026, 11, 29, 22, 0, tzinfo=UTC)


def captured_steps() -> list[Step]:
    return [
        Step("begin", "BEGIN", (), "pre-ping"),
        Step("execute", ";", (), "pre-ping"),
        Step("rollback", "ROLLBACK", (), "pre-ping"),
        Step("begin", "BEGIN", ()),
        Step(
            "execute",
            "INSERT INTO idempotency_records (principal_id, key, created_at) VALUES ($1, $2, $3)",
            (KEY_ID, IDEMPOTENCY_KEY, NOW),
        ),
        Step("execute", "SELECT id FROM products WHERE sku IN ($1, $2)", (R.sku(100), R.sku(5000))),
        Step(
            "execute",
            "INSERT INTO orders (id, customer_id, metadata) VALUES ($1, $2, $3)",
            (ORDER, CUSTOMER, '{"note": "a: b"}'),
        ),
        Step(
            "executemany",
            "INSERT INTO order_lines (id, order_id, product_id, sku) VALUES ($1, $2, $3, $4)",
            [
                (LINES[0], ORDER, PRODUCTS[0][0], PRODUCTS[0][1]),
                (LINES[1], ORDER, PRODUCTS[1][0], PRODUCTS[1][1]),
            ],
        ),
        Step(
            "executemany",
            "INSERT INTO stock_movements (id, location_id, order_id) VALUES ($1, $2, $3)",
            [(MOVES[0], LOCATION, ORDER), (MOVES[1], LOCATION, ORDER)],
        ),
        Step("execute", "UPDATE x SET ids = $1", ([PRODUCTS[0][0], PRODUCTS[1][0]],)),
        Step("commit", "COMMIT", ()),
    ]


def template() -> Template:
    return build_template(captured_steps(), PRODUCTS, IDEMPOTENCY_KEY)


def test_counts_statements_per_execution_and_round_trips_per_wait() -> None:
    figures = counts(captured_steps())
    assert figures == {
        "statements": 13,
        "round_trips": 11,
        "pre_ping_statements": 3,
        "pre_ping_round_trips": 3,
    }


def test_template_marks_new_ids_products_and_the_idempotency_key() -> None:
    tpl = template()
    assert tpl.products == 2
    # ord, two oli, two mov and the idempotency key; each original gets one slot.
    assert sorted(tpl.fresh_prefixes) == sorted(["bench-", "ord_", "oli_", "oli_", "mov_", "mov_"])
    insert_order = tpl.steps[6]
    assert isinstance(insert_order.parameters[0], Slot)
    assert insert_order.parameters[1] == CUSTOMER
    lines = tpl.steps[7].parameters
    assert lines[0][1] == insert_order.parameters[0]  # the same order id, the same slot
    assert lines[0][2] == Slot("product_id", 0)
    assert lines[1][3] == Slot("sku", 1)
    assert tpl.steps[8].parameters[0][1] == LOCATION
    assert not tpl.steps[1].has_slots
    assert tpl.steps[4].parameters[0] == KEY_ID
    assert tpl.steps[4].parameters[2] == NOW


def test_instantiate_gives_every_order_fresh_consistent_ids() -> None:
    tpl = template()
    ids = FreshIds(tag="T00000")
    new_products = [(R.product_id(7), R.sku(7)), (R.product_id(8000), R.sku(8000))]
    first = instantiate(tpl, new_products, [ids.next(p) for p in tpl.fresh_prefixes])
    second = instantiate(tpl, new_products, [ids.next(p) for p in tpl.fresh_prefixes])
    order_a = first[6][2][0]
    order_b = second[6][2][0]
    assert order_a != order_b
    assert order_a.startswith("ord_")
    assert ID_PATTERN.match(order_a)
    assert first[7][2][0][1] == order_a
    assert first[8][2][1][2] == order_a
    assert first[7][2][0][2:] == (R.product_id(7), R.sku(7))
    assert first[7][2][1][2:] == (R.product_id(8000), R.sku(8000))
    assert first[7][2][0][0] != first[7][2][1][0]  # two lines, two ids
    assert first[9][2] == ([R.product_id(7), R.product_id(8000)],)
    key = first[4][2][1]
    assert key.startswith("bench-")
    assert key != IDEMPOTENCY_KEY
    assert key != second[4][2][1]
    assert [step[1] for step in first] == [step.statement for step in tpl.steps]
    assert first[1] == ("execute", ";", ())


def test_fresh_ids_have_stockflows_shape_and_never_repeat() -> None:
    ids = FreshIds()
    made = [ids.next("ord_") for _ in range(1000)]
    assert len(set(made)) == 1000
    assert all(ID_PATTERN.match(value) for value in made)


def test_picked_products_are_distinct_and_in_lock_order() -> None:
    rng = random.Random(1)  # noqa: S311  (test data, not secrets)
    for _ in range(500):
        picked = pick_products(rng, 10_000, 3)
        assert picked == sorted(set(picked))
        assert picked[0] >= 1
        assert picked[-1] <= 9_999
        assert [R.sku(i) for i in picked] == sorted(R.sku(i) for i in picked)
    with pytest.raises(ValueError, match="cannot give"):
        pick_products(rng, 2, 3)


def test_pgbench_script_binds_every_parameter_and_hides_colons() -> None:
    script = pgbench_script(template(), R)
    assert "\\set p0 random(1, 4500)" in script
    assert "\\set p1 random(4501, 9000)" in script
    assert not re.search(r"\$\d", script)
    assert 'E\'{"note"\\x3a "a\\x3a b"}\'' in script
    assert "('BENCH-' || lpad(:p1::text, 6, '0'))" in script
    assert "('prod_' || lpad(:p0::text, 26, '0'))" in script
    assert script.count("\\startpipeline") == 2
    assert "now()" in script
    assert CUSTOMER in script
    assert ORDER not in script
    assert IDEMPOTENCY_KEY not in script
    # Outside quoted constants, the only colons left are pgbench variables and casts.
    unquoted = re.sub(r"E'(?:[^']|'')*'", "", script)
    for match in re.finditer(r":+(\w*)", unquoted):
        assert match.group(0).startswith("::") or match.group(1) in {"p0", "p1", "base"}


def test_parse_pgbench_summary() -> None:
    output = (
        "number of transactions actually processed: 81234\n"
        "number of failed transactions: 0 (0.000%)\n"
        "latency average = 1.970 ms\n"
        "initial connection time = 12.345 ms\n"
        "tps = 4061.700123 (without initial connection time)\n"
    )
    assert parse_pgbench(output) == {
        "tps": pytest.approx(4061.700123),
        "latency_avg_ms": pytest.approx(1.97),
        "transactions": 81234,
        "failed": 0,
    }
    assert parse_pgbench("pgbench: error: connection failed")["tps"] is None


# --- the lean HTTP client's framing ------------------------------------------------------


def test_request_bytes_and_response_head() -> None:
    raw = encode_request("POST", "/v1/orders", b"h:1", b"A: b\r\n", b'{"x":1}')
    assert (
        raw == b'POST /v1/orders HTTP/1.1\r\nHost: h:1\r\nA: b\r\nContent-Length: 7\r\n\r\n{"x":1}'
    )
    assert encode_request("GET", "/r", b"h", b"", None) == b"GET /r HTTP/1.1\r\nHost: h\r\n\r\n"
    head = (
        b"HTTP/1.1 201 Created\r\nlocation: /v1/orders/ord_1\r\ncontent-length: 12\r\n"
        b"content-type: application/json"
    )
    assert parse_head(head) == (201, 12, False, False, "/v1/orders/ord_1")
    assert parse_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close") == (
        200,
        None,
        True,
        True,
        None,
    )


def test_request_bodies_are_the_api_s_json() -> None:
    lines = (("BENCH-000001", 2), ("BENCH-000777", 1))
    body = json.loads(order_body(b'{"customer_id":"cus_1","lines":[', lines))
    assert body == {
        "customer_id": "cus_1",
        "lines": [{"sku": "BENCH-000001", "quantity": 2}, {"sku": "BENCH-000777", "quantity": 1}],
    }
    assert json.loads(ship_body(lines))["lines"][1] == {"sku": "BENCH-000777", "quantity": 1}


class _CountingConnection:
    """A connection that answers after a short pause, counting what it carried."""

    in_flight = 0
    most_in_flight = 0

    def __init__(self) -> None:
        self.sent = 0
        self.closed = False

    async def send(self, method: str, path: str, headers: bytes, body: bytes | None) -> Response:
        cls = type(self)
        cls.in_flight += 1
        cls.most_in_flight = max(cls.most_in_flight, cls.in_flight)
        try:
            await asyncio.sleep(0.001)
        finally:
            cls.in_flight -= 1
        self.sent += 1
        return Response(status=201, location=None, body=b"{}")

    async def close(self) -> None:
        self.closed = True


class _Steady:
    def next(self) -> Call:
        return Call("order", "POST", "/v1/orders", b"", b"{}")

    def done(self, call: Call, response: Response) -> None:
        pass


async def test_the_closed_loop_keeps_its_concurrency_and_takes_every_connection_in_turn() -> None:
    opened: list[_CountingConnection] = []

    def connect() -> _CountingConnection:
        opened.append(_CountingConnection())
        return opened[-1]

    window = await closed_loop(
        _Steady(),  # type: ignore[arg-type]
        connect,
        concurrency=3,
        connections=12,
        warmup_s=0.0,
        duration_s=0.3,
        server=None,
    )
    assert len(opened) == 12
    assert _CountingConnection.most_in_flight == 3
    sent = [conn.sent for conn in opened]
    # Taken in turn: no connection carries much more than any other.
    assert min(sent) > 0
    assert max(sent) - min(sent) <= 1
    assert all(conn.closed for conn in opened)
    assert 0 < window.sample.successes <= sum(sent)


@asynccontextmanager
async def _client_of(
    handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
    *,
    timeout_s: float = 30.0,
) -> AsyncIterator[RawConnection]:
    """The raw client, connected to a loopback server answering with ``handler``."""
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    conn = RawConnection("127.0.0.1", port, timeout_s=timeout_s)
    try:
        yield conn
    finally:
        await conn.close()
        server.close()
        await server.wait_closed()


async def test_a_request_on_a_connection_the_server_closed_while_idle_is_sent_again() -> None:
    # A loopback server that answers one request per connection and then closes it, as
    # uvicorn does to a keep-alive connection idle past its timeout.
    served = 0

    async def answer_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal served
        await reader.readuntil(b"\r\n\r\n")
        served += 1
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()

    async with _client_of(answer_once) as conn:
        assert (await conn.send("GET", "/", b"", None)).status == 200
        await asyncio.sleep(0.05)  # the server has closed it by now
        assert (await conn.send("GET", "/", b"", None)).status == 200
        assert served == 2


def test_windows_merged_add_up_requests_and_seconds_and_average_the_machine_share() -> None:
    first, second = Sample(), Sample()
    for _ in range(30):
        first.record("order", "201", 0.010)
    for _ in range(10):
        second.record("order", "201", 0.030)
    second.record("order", "409", 0.001)
    merged = Window.merged(
        [
            Window(first, 3.0, {"server_s": 1.5, "machine_busy_share": 1.0}),
            Window(second, 1.0, {"server_s": 0.5, "machine_busy_share": 0.6}),
        ]
    ).summary()
    assert merged["duration_s"] == 4.0
    assert merged["successes"] == 40
    assert merged["throughput_per_s"] == 10.0
    assert merged["errors"] == {"409": 1}
    assert merged["server_cpu_ms_per_request"] == pytest.approx(2000.0 / 41)
    assert merged["cpu"]["machine_busy_share"] == pytest.approx(0.9)
    assert merged["latency"]["p50_ms"] == pytest.approx(10.0)


def test_turn_orders_are_balanced() -> None:
    for sides in (2, 3, 4):
        orders = runner.turn_orders(sides)
        for position in range(sides):
            column = [order[position] for order in orders]
            assert sorted(column) == sorted(
                column[:1] * 0 + list(range(sides)) * (len(orders) // sides)
            )
        follows = [(order[k], order[k + 1]) for order in orders for k in range(sides - 1)]
        assert len(set(follows)) == sides * (sides - 1)
        assert len({follows.count(pair) for pair in follows}) == 1


def test_the_report_shows_every_rounds_ratio() -> None:
    results = {
        "started_at": "2026-11-30T05:00:00+00:00",
        "machine": {
            "cores": 2,
            "cpu_model": "test",
            "postgresql": "15",
            "python": "3.11",
            "sqlite": "3.40",
            "stockflow": "0.1.0",
        },
        "options": {
            "smoke": False,
            "duration_s": 20.0,
            "warmup_s": 5.0,
            "concurrency": 8,
            "workers": 2,
            "client": "raw",
            "catalog_size": 10_000,
            "backorder_size": 300,
        },
        "rounds": [
            {
                "warmup_s": 5.0,
                "orders_per_s": 300.0,
                "ceiling_per_s": 600.0,
                "bare_per_s": 420.0,
                "ratio": 0.5,
                "bare_ratio": 0.7,
            },
            {
                "warmup_s": 1.0,
                "orders_per_s": 280.0,
                "ceiling_per_s": 700.0,
                "bare_per_s": 450.0,
                "ratio": 0.4,
                "bare_ratio": 450 / 700,
            },
        ],
    }
    text = render(results)
    assert "in 2 rounds of 10 s" in text
    assert "warm-up of its own (5, 1 s)" in text
    assert "the replayed SQL and the bare endpoint took turns" in text
    assert "300/600 = 0.50x (bare 420 = 0.70x), 280/700 = 0.40x (bare 450 = 0.64x)" in text


@pytest.mark.parametrize(
    ("wire", "body"),
    [
        (
            b"HTTP/1.1 201 Created\r\nContent-Length: 5\r\nLocation: /v1/orders/o1\r\n\r\nhello",
            b"hello",
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nhel\r\n2;ext=1\r\nlo\r\n0\r\nTrailer: x\r\n\r\n",
            b"hello",
        ),
        (b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n", b""),
    ],
)
async def test_the_raw_client_reads_a_response_however_it_is_split(
    wire: bytes, body: bytes
) -> None:
    # Sent one byte at a time, twice on the same connection.
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(2):
            await reader.readuntil(b"\r\n\r\n")
            for index in range(len(wire)):
                writer.write(wire[index : index + 1])
                await writer.drain()
                await asyncio.sleep(0)
        writer.close()

    async with _client_of(answer) as conn:
        for _ in range(2):
            response = await conn.send("POST", "/v1/orders", b"X-Test: 1\r\n", b"{}")
            assert response.body == body
            assert response.status == int(wire[9:12])
        assert (response.location is not None) == (b"Location" in wire)


async def test_the_raw_client_reads_a_body_that_runs_to_the_close() -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.0 200 OK\r\n\r\nuntil the end")
        await writer.drain()
        writer.close()

    async with _client_of(answer) as conn:
        response = await conn.send("GET", "/", b"", None)
        assert (response.status, response.body) == (200, b"until the end")


async def test_the_raw_client_gives_up_after_its_timeout() -> None:
    async def never(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    async with _client_of(never, timeout_s=0.2) as conn:
        with pytest.raises(TimeoutError):
            await conn.send("GET", "/", b"", None)


async def test_the_raw_client_fails_at_once_on_a_reply_that_is_not_http() -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"SSH-2.0-nope\r\n\r\n")
        await writer.drain()
        await reader.read()

    async with _client_of(garbage, timeout_s=30.0) as conn:
        async with asyncio.timeout(5):
            with pytest.raises(ValueError, match="not an HTTP"):
                await conn.send("GET", "/", b"", None)


async def test_a_request_whose_answer_broke_off_is_not_sent_again() -> None:
    # The second request on the connection gets half an answer: it may have been acted on,
    # so it is an error, not a retry.
    served = 0

    async def half_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal served
        await reader.readuntil(b"\r\n\r\n")
        served += 1
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        await reader.readuntil(b"\r\n\r\n")
        served += 1
        writer.write(b"HTTP/1.1 201 Created\r\nContent-Len")
        await writer.drain()
        writer.close()

    async with _client_of(half_answer) as conn:
        assert (await conn.send("POST", "/", b"", b"{}")).status == 200
        with pytest.raises(asyncio.IncompleteReadError):
            await conn.send("POST", "/", b"", b"{}")
        assert served == 2


async def test_orders_and_what_it_is_compared_with_take_turns_first() -> None:
    calls: list[tuple[str, int, float, float]] = []

    def side(name: str, per_round: int) -> runner.Side:
        async def run(index: int, warmup_s: float, duration_s: float) -> Window:
            calls.append((name, index, warmup_s, duration_s))
            sample = Sample()
            for _ in range(per_round):
                sample.record("order", "201", 0.001)
            return Window(sample, duration_s, {"server_s": 1.0})

        return run

    options = runner.Options(
        scenarios=("orders",), duration_s=12.0, warmup_s=5.0, concurrency=8, rounds=None,
        workers=1, rate_share=0.5, smoke=False, out=Path("."), admin_url="", database="",
        catalog_size=12, backorder_size=3, ceiling=True, bare=True, sqlite=False,
        fixed_rate=False, client="raw", keep_database=False, seed=1,
    )  # fmt: skip
    windows, rounds = await runner._orders_in_rounds(
        options, side("orders", 4), {"ceiling": side("ceiling", 8), "bare": side("bare", 6)}
    )
    # Six rounds: each side first, second and third twice, and after each other side
    # equally often.
    turns = [[calls[3 * index + k][0] for k in range(3)] for index in range(6)]
    assert [entry["order"] for entry in rounds] == turns
    for position in range(3):
        assert (
            sorted(turn[position] for turn in turns)
            == ["bare"] * 2 + ["ceiling"] * 2 + ["orders"] * 2
        )
    follows = [(turn[k], turn[k + 1]) for turn in turns for k in range(2)]
    assert len(set(follows)) == 6
    assert all(follows.count(pair) == 2 for pair in set(follows))
    assert {(name, warmup, duration) for name, _, warmup, duration in calls if _ == 0} == {
        ("orders", 5.0, 2.0),
        ("ceiling", 5.0, 2.0),
        ("bare", 5.0, 2.0),
    }
    assert all(warmup == 1.0 for _, index, warmup, _ in calls if index > 0)
    assert windows["orders"].summary()["throughput_per_s"] == 2.0
    assert windows["ceiling"].summary()["throughput_per_s"] == 4.0
    assert windows["bare"].summary()["throughput_per_s"] == 3.0
    assert [entry["ratio"] for entry in rounds] == [0.5] * 6
    assert rounds[0]["bare_per_s"] == 3.0
    assert rounds[0]["bare_ratio"] == 0.75

    calls.clear()
    alone, solo_rounds = await runner._orders_in_rounds(options, side("orders", 4), {})
    assert calls == [("orders", 0, 5.0, 12.0)]
    assert list(alone) == ["orders"]
    assert solo_rounds[0]["orders_per_s"] == 4 / 12


def test_a_read_of_a_row_the_run_created_that_is_not_found_is_the_harness_s_problem() -> None:
    sample = Sample()
    for _ in range(10):
        sample.record("get_order", "200", 0.001)
    sample.record("get_order", "404", 0.001)
    summary = Window(sample, 1.0, {}).summary()
    assert runner.problems({"scenarios": {"reads": summary}}) == [
        "reads: 1 x 404 for rows the run created"
    ]
    assert runner.problems({"scenarios": {"hot": summary}}) == []


def test_the_bare_endpoint_answers_with_the_new_orders_id() -> None:
    tpl = template()
    assert tpl.fresh_prefixes[order_id_slot(tpl)] == "ord_"
    # Not the first fresh value, which is the Idempotency-Key.
    assert order_id_slot(tpl) != tpl.fresh_prefixes.index("bench-")
