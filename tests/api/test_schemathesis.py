"""Property-based conformance of the whole API against its own OpenAPI document.

Schemathesis generates requests for every operation, in-process, once with an admin key and
once with a customer key, with every default check: no server error; every status, content
type, header and body as documented; invalid input refused and valid input accepted;
authentication enforced; and chains of calls (the stateful phase) that keep to the same
promises. On top of them every error must be a problem+json body, and the document itself
must describe every response precisely.

Runs are deterministic (a fixed seed, derandomized generation, no example database), so a
failure in CI is a failure on every machine.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any
from unittest import mock

import httpx
import hypothesis
import pytest
import schemathesis
from fastapi import FastAPI
from schemathesis.openapi.checks import RejectedPositiveData
from schemathesis.python.asgi import shutdown_lifespans
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from stockflow.api.problems import PROBLEM_MEDIA_TYPE, PROBLEM_SCHEMA_REF, VALIDATION_DETAIL
from stockflow.app import create_app
from stockflow.auth import service as auth_service
from stockflow.auth.keys import generate_key
from stockflow.auth.roles import Principal, Role
from stockflow.auth.schemas import ApiKeyCreate
from stockflow.config import Settings
from stockflow.customers import service as customers_service
from stockflow.customers.schemas import CustomerCreate
from stockflow.db import migrate
from stockflow.db.engine import Database

SEED = 20261129
EXAMPLES_PER_OPERATION = 50
STATEFUL_SCENARIOS = 50
ROLES = (Role.ADMIN, Role.CUSTOMER)

# Schemathesis builds one test per operation while collecting, so the app under test and
# the keys it is called with must exist by then; `fuzz_database` creates, migrates and
# seeds the database file, and issues these keys, only when the tests run.
_DATABASE_FILE = Path(tempfile.gettempdir()) / f"stockflow-fuzz-{secrets.token_hex(6)}.db"
_DATABASE_URL = f"sqlite+aiosqlite:///{_DATABASE_FILE}"
_KEYS = {role: generate_key() for role in ROLES}


async def _documentation_resolver(host: str, port: int) -> list[str]:
    """Every host resolves to one public address, without a name server: a fuzzed URL
    must neither leave the machine nor wait for DNS."""
    return ["93.184.216.34"]


def _fuzz_app() -> FastAPI:
    # No background worker: each answer depends on the requests alone. The rate limits are
    # out of reach, or every probe without a key would spend the one client address's
    # budget (`test_rate_limited_answers_are_documented` covers the 429).
    settings = Settings(
        database_url=_DATABASE_URL,
        worker_in_process=False,
        rate_limit_per_key="1000000/minute",
        rate_limit_per_address="1000000/minute",
    )
    app = create_app(settings)
    app.state.webhooks = replace(app.state.webhooks, resolver=_documentation_resolver)
    return app


def _config(role: Role) -> schemathesis.Config:
    return schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "auth": {"openapi": {"HTTPBearer": {"bearer": _KEYS[role]}}},
            "generation": {
                "max-examples": EXAMPLES_PER_OPERATION,
                "deterministic": True,
                "database": "none",
            },
            # Replaced by `schema_valid_requests_pass_validation`, which keeps its promise
            # for everything the document can express.
            "checks": {"positive_data_acceptance": {"enabled": False}},
            "operations": [
                {
                    # Where payments are not `stripe` (as here) the route answers every
                    # request with its documented 404, a missing `Stripe-Signature` too; the
                    # 400 for that is tested where Stripe's events are taken
                    # (tests/api/test_payments_stripe.py).
                    "include-name": "POST /v1/webhooks/stripe",
                    "checks": {"missing_required_header": {"enabled": False}},
                }
            ],
        }
    )


def _schema(role: Role) -> schemathesis.BaseSchema:
    loaded = schemathesis.openapi.from_dict(APP.openapi(), config=_config(role))
    loaded.app = APP
    return loaded


APP = _fuzz_app()

_SHAPE_REFUSAL = re.compile(re.escape(VALIDATION_DETAIL).replace(r"\{count\}", r"\d+"))
# Rules between fields, or between the items of a list, that JSON Schema cannot state: a
# bound at least another field's value, one entry per supplier. A request breaking them is
# schema-valid and rightly refused, at these locations only.
_RELATIONAL_RULES = {
    ("POST /v1/products", "body.reorder_up_to"),
    ("POST /v1/products", "body.suppliers"),
}


@schemathesis.check
def errors_are_problems(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case[Any]
) -> bool | None:
    """Every error is RFC 9457 problem+json, with the members every problem carries."""
    if response.status_code < 400:
        return None
    content_type = response.headers.get("content-type", [""])[0]
    assert content_type == PROBLEM_MEDIA_TYPE, f"error sent as {content_type!r}"
    body = response.json()
    assert isinstance(body, dict), "a problem is a JSON object"
    assert body.get("status") == response.status_code, "`status` differs from the HTTP status"
    assert isinstance(body.get("type"), str), "no `type`"
    assert body["type"] == "about:blank" or body["type"].startswith("/problems/"), body["type"]
    for member in ("title", "detail"):
        assert isinstance(body.get(member), str), f"no `{member}`"
        assert body[member], f"empty `{member}`"
    assert body.get("request_id") == response.headers["x-request-id"][0], "wrong `request_id`"
    return True


@schemathesis.check
def schema_valid_requests_pass_validation(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case[Any]
) -> bool | None:
    """Schemathesis's ``positive_data_acceptance``, except for the refusals that depend on
    what the database holds or on earlier requests rather than on the request's shape.

    A schema-valid request naming an unknown SKU, supplier, customer or location, a
    `cursor` no list returned, an `Idempotency-Key` first used for another request, an
    amount above what is owed, a product without the supplier its policy needs: each is a
    documented 422 with its own problem type (or a `validation-error` that says what does
    not exist), and right, whereas no JSON Schema can say which ids exist. So is a 412 for
    an `If-Match` that is not the resource's current ETag. A 422 for the request's shape
    (its detail is ``VALIDATION_DETAIL``) is still a failure, but for `_RELATIONAL_RULES`:
    there the document promised what the validator refused.
    """
    try:
        return positive_data_acceptance(ctx, response, case)
    except RejectedPositiveData:
        if response.status_code == 412:
            return None  # `If-Match` against an ETag only the server knows
        if response.status_code != 422:
            raise
        body = response.json()
        if _SHAPE_REFUSAL.fullmatch(body["detail"]) and not all(
            (case.operation.label, error["location"]) in _RELATIONAL_RULES
            for error in body["errors"]
        ):
            raise
        return None


async def _seed() -> None:
    """A customer, and the admin and customer keys the schemas were built with, issued as
    the API issues every key."""
    database = Database(Settings(database_url=_DATABASE_URL))
    actor = Principal.command_line()
    try:
        async with database.transaction() as session:
            customer = await customers_service.create_customer(
                session, actor=actor, data=CustomerCreate(name="Fuzzed Customer")
            )
            for role, key in _KEYS.items():
                data = ApiKeyCreate(
                    name=f"fuzz {role.value}",
                    role=role,
                    customer_id=customer.id if role is Role.CUSTOMER else None,
                )
                with mock.patch.object(auth_service, "generate_key", return_value=key):
                    await auth_service.create_key(session, actor=actor, data=data)
    finally:
        await database.dispose()


@pytest.fixture(scope="module")
def fuzz_database() -> Iterator[None]:
    """The app's own SQLite file, which the fuzzer may fill with anything: it is removed
    afterwards. The app opens it on Schemathesis's event loop, and stops there too."""
    migrate.upgrade(_DATABASE_URL)
    try:
        asyncio.run(_seed())
        yield
    finally:
        shutdown_lifespans()
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{_DATABASE_FILE}{suffix}").unlink(missing_ok=True)


@schemathesis.pytest.parametrize(**{role.value: _schema(role) for role in ROLES})
def test_every_operation_keeps_to_the_document(
    case: schemathesis.Case[Any], fuzz_database: None
) -> None:
    case.call_and_validate()


@pytest.mark.parametrize("role", ROLES, ids=lambda role: role.value)
def test_call_sequences_keep_to_the_document(role: Role, fuzz_database: None) -> None:
    _schema(role).as_state_machine().run(
        settings=hypothesis.settings(
            max_examples=STATEFUL_SCENARIOS,
            derandomize=True,
            database=None,
            deadline=None,
            suppress_health_check=list(hypothesis.HealthCheck),
        )
    )


def _resolved(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        node: Any = document
        for part in schema["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def _described(document: dict[str, Any], schema: dict[str, Any]) -> bool:
    """A body's schema names its members (or is a choice of schemas that do), rather than
    being any object at all."""
    schema = _resolved(document, schema)
    alternatives = schema.get("anyOf") or schema.get("oneOf")
    if alternatives:
        return all(_described(document, member) for member in alternatives)
    return schema.get("type") == "object" and bool(schema.get("properties"))


def test_the_document_describes_every_response_precisely() -> None:
    document = APP.openapi()
    vague: list[str] = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                where = f"{method.upper()} {path} {status}"
                content = response.get("content", {})
                if status.startswith("2") and "application/json" in content:
                    if not _described(document, content["application/json"].get("schema", {})):
                        vague.append(f"{where}: not a described object")
                elif status[0] in "45":
                    if set(content) != {PROBLEM_MEDIA_TYPE}:
                        vague.append(f"{where}: sent as {sorted(content)}")
                    elif content[PROBLEM_MEDIA_TYPE]["schema"] != {"$ref": PROBLEM_SCHEMA_REF}:
                        vague.append(f"{where}: not the problem schema")
    assert vague == []
    problem = _resolved(document, {"$ref": PROBLEM_SCHEMA_REF})
    assert {"type", "title", "status", "detail", "request_id"} <= set(problem["required"])


async def test_rate_limited_answers_are_documented() -> None:
    """The fuzzer runs out of the rate limit's reach; a 429 from a tight limit is checked
    against the document here."""
    settings = Settings(
        database_url="sqlite:///:memory:",
        worker_in_process=False,
        rate_limit_per_address="1/minute",
    )
    limited_app = create_app(settings)
    transport = httpx.ASGITransport(app=limited_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://stockflow.test") as client:
        await client.get("/problems/not-found")
        response = await client.get("/problems/not-found")
    assert response.status_code == 429, response.text
    case = _schema(Role.ADMIN)["/problems/{slug}"]["GET"].Case(
        path_parameters={"slug": "not-found"}
    )
    case.validate_response(
        response,
        checks=[
            status_code_conformance,
            content_type_conformance,
            response_headers_conformance,
            response_schema_conformance,
            errors_are_problems,
        ],
    )
    assert int(response.headers["Retry-After"]) >= 1
