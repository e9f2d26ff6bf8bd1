"""Authentication with API keys, and the admin-only ``/v1/api-keys`` endpoints."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import update
from typer.testing import CliRunner, Result

from stockflow.audit import repository as audit_repository
from stockflow.auth.keys import generate_key, hash_key, is_well_formed
from stockflow.cli.main import app as cli_app
from stockflow.db.engine import Database
from stockflow.db.models import ApiKey
from tests.assertions import assert_problem
from tests.conftest import Keys

READ_FIELDS = {
    "expires_at",
    "replaced_by",
    "id",
    "name",
    "role",
    "customer_id",
    "prefix",
    "created_by",
    "created_at",
    "last_used_at",
    "revoked_at",
}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def assert_unauthenticated(response: httpx.Response) -> dict[str, Any]:
    body = assert_problem(response, 401, "unauthenticated")
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert "Traceback" not in response.text
    return body


async def create_key(
    client: httpx.AsyncClient, keys: Keys, role: str = "staff", **extra: Any
) -> dict[str, Any]:
    response = await client.post(
        "/v1/api-keys", headers=keys.admin, json={"name": f"{role} key", "role": role, **extra}
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


# --- authentication ------------------------------------------------------------------------


async def test_no_authorization_header_is_401_problem(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    body = assert_unauthenticated(await client.get("/v1/products"))
    assert "Bearer" in body["detail"]


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer not-a-key",
        "Bearer sf_",
        "Bearer ",
        "Bearer",
        "sf_nothing",
        "Basic YWRtaW46YWRtaW4=",
        "Token sf_abc",
    ],
    ids=["garbage", "prefix-only", "empty-bearer", "bare-scheme", "no-scheme", "basic", "token"],
)
async def test_malformed_credentials_are_401(
    client: httpx.AsyncClient, keys: Keys, authorization: str
) -> None:
    assert_unauthenticated(
        await client.get("/v1/products", headers={"Authorization": authorization})
    )


async def test_basic_scheme_with_a_valid_key_is_still_401(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    raw = keys.admin["Authorization"].removeprefix("Bearer ")
    assert (await client.get("/v1/products", headers=keys.admin)).status_code == 200
    assert_unauthenticated(
        await client.get("/v1/products", headers={"Authorization": f"Basic {raw}"})
    )


async def test_a_key_with_a_broken_checksum_is_401(client: httpx.AsyncClient, keys: Keys) -> None:
    raw = keys.admin["Authorization"].removeprefix("Bearer ")
    last = "A" if raw[-1] != "A" else "B"
    tampered = raw[:-1] + last
    assert not is_well_formed(tampered)
    body = assert_unauthenticated(await client.get("/v1/products", headers=bearer(tampered)))
    assert "not valid" in body["detail"]


async def test_a_well_formed_but_unknown_key_is_401(client: httpx.AsyncClient, keys: Keys) -> None:
    unknown = generate_key()
    assert is_well_formed(unknown)
    body = assert_unauthenticated(await client.get("/v1/products", headers=bearer(unknown)))
    assert "not valid" in body["detail"]


async def test_the_scheme_is_case_insensitive(client: httpx.AsyncClient, keys: Keys) -> None:
    raw = keys.admin["Authorization"].removeprefix("Bearer ")
    response = await client.get("/v1/products", headers={"Authorization": f"bearer {raw}"})
    assert response.status_code == 200


async def test_a_revoked_key_is_refused_on_the_very_next_request(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    created = await create_key(client, keys, "staff")
    headers = bearer(created["key"])
    assert (await client.get("/v1/products", headers=headers)).status_code == 200

    revoked = await client.delete(f"/v1/api-keys/{created['id']}", headers=keys.admin)
    assert revoked.status_code == 200, revoked.text

    body = assert_unauthenticated(await client.get("/v1/products", headers=headers))
    assert "revoked" in body["detail"]
    # Every endpoint refuses it, writes included.
    assert_unauthenticated(
        await client.post("/v1/customers", headers=headers, json={"name": "Nobody"})
    )


async def test_an_admin_may_revoke_its_own_key(client: httpx.AsyncClient, keys: Keys) -> None:
    response = await client.delete(f"/v1/api-keys/{keys.ids['admin']}", headers=keys.admin)
    assert response.status_code == 200
    assert_unauthenticated(await client.get("/v1/api-keys", headers=keys.admin))


# --- creating keys -------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["admin", "staff", "service"])
async def test_create_returns_the_key_once(
    client: httpx.AsyncClient, keys: Keys, role: str
) -> None:
    response = await client.post(
        "/v1/api-keys", headers=keys.admin, json={"name": "Storefront", "role": role}
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == READ_FIELDS | {"key"}
    key = body["key"]
    assert key.startswith("sf_")
    assert is_well_formed(key)
    assert body["id"].startswith("key_")
    assert body["name"] == "Storefront"
    assert body["role"] == role
    assert body["customer_id"] is None
    assert body["prefix"] == key[:10]
    assert body["created_by"] == keys.ids["admin"]
    assert datetime.fromisoformat(body["created_at"]).utcoffset() is not None
    assert body["last_used_at"] is None
    assert body["revoked_at"] is None
    assert hash_key(key) not in response.text

    # Shown once: neither the single read nor the list contains it again.
    one = await client.get(f"/v1/api-keys/{body['id']}", headers=keys.admin)
    assert one.status_code == 200
    assert set(one.json()) == READ_FIELDS
    assert {k: v for k, v in body.items() if k != "key"} == one.json()


async def test_the_key_secret_and_its_hash_never_appear_in_reads(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    created = await create_key(client, keys, "service")
    secret, digest = created["key"], hash_key(created["key"])
    # Use it once so that every field is filled in.
    assert (await client.get("/v1/products", headers=bearer(secret))).status_code == 200
    await client.delete(f"/v1/api-keys/{created['id']}", headers=keys.admin)
    reads = [
        await client.get(f"/v1/api-keys/{created['id']}", headers=keys.admin),
        await client.get("/v1/api-keys", headers=keys.admin),
        await client.get("/v1/api-keys?include_revoked=true", headers=keys.admin),
        await client.delete(f"/v1/api-keys/{created['id']}", headers=keys.admin),
    ]
    for response in reads:
        assert response.status_code == 200
        assert secret not in response.text
        assert secret[3:] not in response.text
        assert digest not in response.text
        assert '"key"' not in response.text
        assert "key_hash" not in response.text


@pytest.mark.parametrize(
    ("role", "expected_status"),
    [
        ("admin", 200),
        ("staff", 403),
        ("service", 403),
    ],
)
async def test_created_key_works_for_its_role(
    client: httpx.AsyncClient, keys: Keys, role: str, expected_status: int
) -> None:
    created = await create_key(client, keys, role)
    headers = bearer(created["key"])
    # Every role reads products; only admin reads API keys.
    assert (await client.get("/v1/products", headers=headers)).status_code == 200
    listing = await client.get("/v1/api-keys", headers=headers)
    assert listing.status_code == expected_status
    # Staff and admin write products; service does not.
    product = await client.post(
        "/v1/products",
        headers=headers,
        json={"sku": f"SKU-{role}", "name": "Mug", "unit_price": 100, "currency": "EUR"},
    )
    assert product.status_code == (403 if role == "service" else 201), product.text


async def test_created_customer_key_is_bound_to_its_customer(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    created = await create_key(client, keys, "customer", customer_id=keys.other_customer_id)
    assert created["customer_id"] == keys.other_customer_id
    headers = bearer(created["key"])
    own = await client.get(f"/v1/customers/{keys.other_customer_id}", headers=headers)
    assert own.status_code == 200
    assert own.json()["id"] == keys.other_customer_id
    assert (await client.get(f"/v1/customers/{keys.customer_id}", headers=headers)).status_code == (
        404
    )
    listing = (await client.get("/v1/customers", headers=headers)).json()
    assert [c["id"] for c in listing["data"]] == [keys.other_customer_id]


async def test_customer_role_requires_customer_id(client: httpx.AsyncClient, keys: Keys) -> None:
    response = await client.post(
        "/v1/api-keys", headers=keys.admin, json={"name": "Shopper", "role": "customer"}
    )
    body = assert_problem(response, 422, "validation-error")
    assert "customer_id" in response.text
    assert body["errors"]


@pytest.mark.parametrize("role", ["admin", "staff", "service"])
async def test_other_roles_refuse_customer_id(
    client: httpx.AsyncClient, keys: Keys, role: str
) -> None:
    response = await client.post(
        "/v1/api-keys",
        headers=keys.admin,
        json={"name": "Odd", "role": role, "customer_id": keys.customer_id},
    )
    assert_problem(response, 422, "validation-error")
    assert "customer_id" in response.text


async def test_unknown_customer_id_is_422(client: httpx.AsyncClient, keys: Keys) -> None:
    response = await client.post(
        "/v1/api-keys",
        headers=keys.admin,
        json={"name": "Ghost", "role": "customer", "customer_id": "cus_01KB3J5Q2W8Z6Y4X0V9T7S5R3P"},
    )
    body = assert_problem(response, 422, "validation-error")
    assert body["errors"] == [{"location": "body.customer_id", "message": "unknown customer"}]
    listing = await client.get("/v1/api-keys", headers=keys.admin)
    assert all(k["name"] != "Ghost" for k in listing.json()["data"])


@pytest.mark.parametrize(
    ("payload", "location"),
    [
        ({"name": "x", "role": "root"}, "body.role"),
        ({"role": "staff"}, "body.name"),
        ({"name": "", "role": "staff"}, "body.name"),
        ({"name": "x", "role": "staff", "scopes": ["all"]}, "body.scopes"),
        ({"name": "x", "role": "staff", "key": generate_key()}, "body.key"),
        ({"name": "x", "role": "staff", "revoked_at": None}, "body.revoked_at"),
    ],
    ids=["unknown-role", "no-name", "empty-name", "unknown-field", "key-given", "read-only"],
)
async def test_invalid_create_bodies_are_422(
    client: httpx.AsyncClient, keys: Keys, payload: dict[str, Any], location: str
) -> None:
    response = await client.post("/v1/api-keys", headers=keys.admin, json=payload)
    body = assert_problem(response, 422, "validation-error")
    assert any(error["location"].startswith(location) for error in body["errors"]), body["errors"]


# --- listing, reading, revoking ------------------------------------------------------------


async def test_list_paginates_newest_first_with_a_cursor(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    created = [(await create_key(client, keys, "service"))["id"] for _ in range(5)]
    expected = sorted([*created, *keys.ids.values()], reverse=True)  # 9 keys, newest first

    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 4}
        if cursor is not None:
            params["cursor"] = cursor
        response = await client.get("/v1/api-keys", headers=keys.admin, params=params)
        assert response.status_code == 200
        body = response.json()
        assert len(body["data"]) <= 4
        seen.extend(item["id"] for item in body["data"])
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == expected


async def test_list_defaults_and_limits(client: httpx.AsyncClient, keys: Keys) -> None:
    body = (await client.get("/v1/api-keys", headers=keys.admin)).json()
    assert body["next_cursor"] is None
    assert sorted(item["id"] for item in body["data"]) == sorted(keys.ids.values())
    for bad in ("0", "101", "x"):
        response = await client.get("/v1/api-keys", headers=keys.admin, params={"limit": bad})
        assert_problem(response, 422, "validation-error")
    response = await client.get("/v1/api-keys", headers=keys.admin, params={"cursor": "!!"})
    assert_problem(response, 422, "invalid-cursor")


async def test_list_hides_revoked_keys_unless_asked(client: httpx.AsyncClient, keys: Keys) -> None:
    created = await create_key(client, keys, "staff")
    await client.delete(f"/v1/api-keys/{created['id']}", headers=keys.admin)

    default = (await client.get("/v1/api-keys", headers=keys.admin)).json()["data"]
    assert created["id"] not in {k["id"] for k in default}
    assert all(k["revoked_at"] is None for k in default)
    explicit = (
        await client.get("/v1/api-keys", headers=keys.admin, params={"include_revoked": "false"})
    ).json()["data"]
    assert created["id"] not in {k["id"] for k in explicit}

    everything = (
        await client.get("/v1/api-keys", headers=keys.admin, params={"include_revoked": "true"})
    ).json()["data"]
    revoked = [k for k in everything if k["id"] == created["id"]]
    assert len(revoked) == 1
    assert revoked[0]["revoked_at"] is not None
    assert len(everything) == len(default) + 1


async def test_get_one_and_unknown_ids(client: httpx.AsyncClient, keys: Keys) -> None:
    response = await client.get(f"/v1/api-keys/{keys.ids['customer']}", headers=keys.admin)
    assert response.status_code == 200
    body = response.json()
    assert body["role"] == "customer"
    assert body["customer_id"] == keys.customer_id
    assert body["created_by"] == "cli"

    missing = "key_01KB3J5Q2W8Z6Y4X0V9T7S5R3P"
    assert_problem(
        await client.get(f"/v1/api-keys/{missing}", headers=keys.admin), 404, "not-found"
    )
    assert_problem(
        await client.delete(f"/v1/api-keys/{missing}", headers=keys.admin), 404, "not-found"
    )
    assert_problem(
        await client.delete("/v1/api-keys/nonsense", headers=keys.admin), 404, "not-found"
    )


async def test_revoking_twice_is_harmless(client: httpx.AsyncClient, keys: Keys) -> None:
    created = await create_key(client, keys, "service")
    first = await client.delete(f"/v1/api-keys/{created['id']}", headers=keys.admin)
    assert first.status_code == 200
    revoked_at = first.json()["revoked_at"]
    assert revoked_at is not None

    second = await client.delete(f"/v1/api-keys/{created['id']}", headers=keys.admin)
    assert second.status_code == 200
    assert second.json() == first.json()  # the first revocation time stands
    one = await client.get(f"/v1/api-keys/{created['id']}", headers=keys.admin)
    assert one.json()["revoked_at"] == revoked_at
    assert_unauthenticated(await client.get("/v1/products", headers=bearer(created["key"])))


async def test_revoking_one_key_leaves_the_others_working(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    await client.delete(f"/v1/api-keys/{keys.ids['staff']}", headers=keys.admin)
    assert_unauthenticated(await client.get("/v1/products", headers=keys.staff))
    for headers in (keys.admin, keys.service, keys.customer):
        assert (await client.get("/v1/products", headers=headers)).status_code == 200


@pytest.mark.parametrize("role", ["staff", "service", "customer"])
async def test_non_admins_cannot_touch_keys(
    client: httpx.AsyncClient, keys: Keys, role: str
) -> None:
    headers = keys.for_role(role)
    target = keys.ids["service"]
    for response in (
        await client.post("/v1/api-keys", headers=headers, json={"name": "x", "role": "admin"}),
        await client.get("/v1/api-keys", headers=headers),
        await client.get(f"/v1/api-keys/{target}", headers=headers),
        await client.delete(f"/v1/api-keys/{target}", headers=headers),
    ):
        body = assert_problem(response, 403, "forbidden")
        assert role in body["detail"]
    # Nothing was created or revoked.
    listing = (await client.get("/v1/api-keys", headers=keys.admin)).json()["data"]
    assert sorted(k["id"] for k in listing) == sorted(keys.ids.values())


# --- the command line: stockflow keys ------------------------------------------------------

runner = CliRunner()


async def stockflow(database_url: str, *args: str) -> Result:
    """Run the CLI as an operator would; it calls asyncio.run, so off this event loop."""

    def invoke() -> Result:
        return runner.invoke(cli_app, list(args), env={"STOCKFLOW_DATABASE_URL": database_url})

    return await asyncio.to_thread(invoke)


@pytest.mark.parametrize(
    "command",
    [["keys"], ["keys", "create"], ["keys", "list"], ["keys", "revoke"], ["keys", "rotate"]],
)
def test_cli_help(command: list[str]) -> None:
    result = runner.invoke(cli_app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


async def test_cli_create_prints_a_key_that_authenticates(
    client: httpx.AsyncClient, database_url: str
) -> None:
    result = await stockflow(database_url, "keys", "create", "--role", "admin", "--name", "ops")
    assert result.exit_code == 0, result.output
    key = result.stdout.strip()
    assert is_well_formed(key), result.stdout
    match = re.search(r"created admin key (key_[0-9A-Z]{26}) \(ops\)", result.stderr)
    assert match, result.stderr
    key_id = match.group(1)

    response = await client.get(f"/v1/api-keys/{key_id}", headers=bearer(key))
    assert response.status_code == 200
    body = response.json()
    assert body["role"] == "admin"
    assert body["name"] == "ops"
    assert body["created_by"] == "cli"
    assert body["prefix"] == key[:10]


async def test_cli_list_shows_ids_but_never_keys(
    client: httpx.AsyncClient, database_url: str
) -> None:
    created = await stockflow(database_url, "keys", "create", "--role", "staff", "--name", "ops")
    key = created.stdout.strip()
    match = re.search(r"key_[0-9A-Z]{26}", created.stderr)
    assert match
    key_id = match.group(0)

    listed = await stockflow(database_url, "keys", "list")
    assert listed.exit_code == 0, listed.output
    # The full id, which `keys revoke` needs, even in an 80-column terminal.
    assert key_id in listed.stdout
    assert key[:10] in listed.stdout
    assert key not in listed.output
    assert key[10:] not in listed.output
    assert hash_key(key) not in listed.output

    revoked = await stockflow(database_url, "keys", "revoke", key_id)
    assert revoked.exit_code == 0, revoked.output
    assert key_id not in (await stockflow(database_url, "keys", "list")).stdout
    everything = await stockflow(database_url, "keys", "list", "--include-revoked")
    assert everything.exit_code == 0
    assert key_id in everything.stdout


async def test_cli_revoke_makes_the_key_401(
    client: httpx.AsyncClient, database_url: str, database: Database
) -> None:
    created = await stockflow(database_url, "keys", "create", "--role", "service", "--name", "sf")
    key = created.stdout.strip()
    match = re.search(r"key_[0-9A-Z]{26}", created.stderr)
    assert match
    key_id = match.group(0)
    assert (await client.get("/v1/products", headers=bearer(key))).status_code == 200

    result = await stockflow(database_url, "keys", "revoke", key_id)
    assert result.exit_code == 0, result.output
    assert f"revoked {key_id}" in result.stdout
    body = assert_unauthenticated(await client.get("/v1/products", headers=bearer(key)))
    assert "revoked" in body["detail"]

    async with database.transaction(write=False) as session:
        records = await audit_repository.for_resource(session, "api_key", key_id)
    assert [(r.action, r.actor_id, r.actor_role) for r in records] == [
        ("api_key.created", "cli", "admin"),
        ("api_key.revoked", "cli", "admin"),
    ]
    # Revoking again is harmless.
    assert (await stockflow(database_url, "keys", "revoke", key_id)).exit_code == 0


async def test_cli_refuses_bad_requests(client: httpx.AsyncClient, database_url: str) -> None:
    unbound = await stockflow(database_url, "keys", "create", "--role", "customer", "--name", "c")
    assert unbound.exit_code == 2
    assert "customer_id" in unbound.stderr
    assert unbound.stdout == ""

    ghost = await stockflow(
        database_url,
        "keys",
        "create",
        "--role",
        "customer",
        "--name",
        "c",
        "--customer",
        "cus_01KB3J5Q2W8Z6Y4X0V9T7S5R3P",
    )
    assert ghost.exit_code == 1
    assert "customer does not exist" in ghost.stderr
    assert ghost.stdout == ""

    bad_role = await stockflow(database_url, "keys", "create", "--role", "root", "--name", "r")
    assert bad_role.exit_code == 2

    missing = await stockflow(database_url, "keys", "revoke", "key_01KB3J5Q2W8Z6Y4X0V9T7S5R3P")
    assert missing.exit_code == 1
    assert "does not exist" in missing.stderr


async def test_cli_creates_a_customer_key(
    client: httpx.AsyncClient, database_url: str, keys: Keys
) -> None:
    result = await stockflow(
        database_url,
        "keys",
        "create",
        "--role",
        "customer",
        "--name",
        "shopper",
        "--customer",
        keys.customer_id,
    )
    assert result.exit_code == 0, result.output
    headers = bearer(result.stdout.strip())
    own = await client.get(f"/v1/customers/{keys.customer_id}", headers=headers)
    assert own.status_code == 200
    other = await client.get(f"/v1/customers/{keys.other_customer_id}", headers=headers)
    assert other.status_code == 404


# --- expiry and rotation --------------------------------------------------------------


async def _new_key(client: httpx.AsyncClient, keys: Keys, **body: Any) -> dict[str, Any]:
    created = await client.post(
        "/v1/api-keys", headers=keys.admin, json={"name": "lifecycle", "role": "staff", **body}
    )
    assert created.status_code == 201, created.text
    key: dict[str, Any] = created.json()
    return key


def _bearer(key: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {key['key']}"}


async def test_a_key_works_until_it_expires(
    client: httpx.AsyncClient, keys: Keys, database: Database
) -> None:
    key = await _new_key(client, keys, expires_at="2099-01-01T00:00:00Z")
    assert key["expires_at"].startswith("2099-01-01T00:00:00")
    assert (await client.get("/v1/products", headers=_bearer(key))).status_code == 200
    async with database.transaction() as session:
        # Time passes: the moment it was given comes.
        await session.execute(
            update(ApiKey)
            .where(ApiKey.id == key["id"])
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    refused = assert_unauthenticated(await client.get("/v1/products", headers=_bearer(key)))
    assert "expired" in refused["detail"]


async def test_a_key_cannot_be_created_already_expired(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    response = await client.post(
        "/v1/api-keys",
        headers=keys.admin,
        json={"name": "late", "role": "staff", "expires_at": "2020-01-01T00:00:00Z"},
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["location"] == "body.expires_at"


async def test_rotation_gives_a_new_key_and_the_old_one_a_grace_period(
    client: httpx.AsyncClient, keys: Keys, database: Database
) -> None:
    old = await _new_key(client, keys)
    rotated = await client.post(
        f"/v1/api-keys/{old['id']}/rotate", headers=keys.admin, json={"grace_seconds": 3600}
    )
    assert rotated.status_code == 201, rotated.text
    new = rotated.json()
    assert new["id"] != old["id"]
    assert (new["name"], new["role"], new["expires_at"]) == ("lifecycle", "staff", None)
    assert is_well_formed(new["key"])
    assert (await client.get("/v1/products", headers=_bearer(new))).status_code == 200
    # The old key still works, and says when it stops and what replaced it.
    assert (await client.get("/v1/products", headers=_bearer(old))).status_code == 200
    shown = (await client.get(f"/v1/api-keys/{old['id']}", headers=keys.admin)).json()
    assert shown["replaced_by"] == new["id"]
    ends = datetime.fromisoformat(shown["expires_at"])
    assert timedelta(minutes=59) < ends - datetime.now(UTC) <= timedelta(hours=1)
    again = await client.post(f"/v1/api-keys/{old['id']}/rotate", headers=keys.admin)
    assert again.status_code == 422
    async with database.transaction(write=False) as session:
        records = await audit_repository.for_resource(session, "api_key", old["id"])
    rotations = [r for r in records if r.action == "api_key.rotated"]
    assert len(rotations) == 1
    assert rotations[0].actor_id == keys.ids["admin"]


async def test_rotation_without_grace_refuses_the_old_key_at_once(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    old = await _new_key(client, keys)
    rotated = await client.post(
        f"/v1/api-keys/{old['id']}/rotate", headers=keys.admin, json={"grace_seconds": 0}
    )
    assert rotated.status_code == 201, rotated.text
    assert_unauthenticated(await client.get("/v1/products", headers=_bearer(old)))
    assert (await client.get("/v1/products", headers=_bearer(rotated.json()))).status_code == 200


async def test_a_revoked_key_cannot_be_rotated(client: httpx.AsyncClient, keys: Keys) -> None:
    old = await _new_key(client, keys)
    assert (await client.delete(f"/v1/api-keys/{old['id']}", headers=keys.admin)).status_code == 200
    refused = await client.post(f"/v1/api-keys/{old['id']}/rotate", headers=keys.admin)
    assert refused.status_code == 422
    missing = await client.post("/v1/api-keys/key_nope/rotate", headers=keys.admin)
    assert missing.status_code == 404


async def test_cli_rotate_and_expiry(
    client: httpx.AsyncClient, database_url: str, database: Database
) -> None:
    created = await stockflow(
        database_url,
        "keys",
        "create",
        "--role",
        "staff",
        "--name",
        "ops",
        "--expires-in-days",
        "30",
    )
    assert created.exit_code == 0, created.output
    old_key = created.stdout.strip()
    match = re.search(r"key_[0-9A-Z]{26}", created.stderr)
    assert match
    rotated = await stockflow(
        database_url, "keys", "rotate", match.group(0), "--grace-seconds", "0"
    )
    assert rotated.exit_code == 0, rotated.output
    new_key = rotated.stdout.strip()
    assert is_well_formed(new_key)
    assert_unauthenticated(await client.get("/v1/products", headers=bearer(old_key)))
    assert (await client.get("/v1/products", headers=bearer(new_key))).status_code == 200
    listed = await stockflow(database_url, "keys", "list")
    # The new key inherits the old one's expiry, 30 days out.
    assert (datetime.now(UTC) + timedelta(days=30)).date().isoformat() in listed.stdout
    again = await stockflow(database_url, "keys", "rotate", match.group(0))
    assert again.exit_code == 1
