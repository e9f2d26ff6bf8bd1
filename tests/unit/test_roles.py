"""Roles and the authenticated caller, without a database."""

from __future__ import annotations

import dataclasses

import pytest

from stockflow.auth.roles import ALL_ROLES, STAFF_ROLES, Principal, Role


def test_the_four_roles_and_their_wire_values() -> None:
    assert [role.value for role in Role] == ["admin", "staff", "service", "customer"]
    assert Role("customer") is Role.CUSTOMER
    assert str(Role.ADMIN) == "admin"  # a StrEnum: serialises as its value
    with pytest.raises(ValueError, match="superuser"):
        Role("superuser")


def test_role_groups() -> None:
    assert frozenset({Role.ADMIN, Role.STAFF}) == STAFF_ROLES
    assert frozenset(Role) == ALL_ROLES
    assert Role.SERVICE not in STAFF_ROLES
    assert Role.CUSTOMER not in STAFF_ROLES


@pytest.mark.parametrize(
    ("role", "is_staff", "is_customer"),
    [
        (Role.ADMIN, True, False),
        (Role.STAFF, True, False),
        (Role.SERVICE, False, False),
        (Role.CUSTOMER, False, True),
    ],
)
def test_principal_flags(role: Role, is_staff: bool, is_customer: bool) -> None:
    customer_id = "cus_01KB3J5Q2W8Z6Y4X0V9T7S5R3P" if role is Role.CUSTOMER else None
    principal = Principal(id="key_1", role=role, name="n", customer_id=customer_id)
    assert principal.is_staff is is_staff
    assert principal.is_customer is is_customer


def test_principal_customer_flag_follows_the_role_not_the_binding() -> None:
    # A service key never reads as a customer, even if a customer id were attached.
    principal = Principal(id="key_1", role=Role.SERVICE, name="n", customer_id="cus_x")
    assert not principal.is_customer


def test_principal_is_immutable() -> None:
    principal = Principal(id="key_1", role=Role.STAFF, name="n")
    assert principal.customer_id is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        principal.role = Role.ADMIN  # type: ignore[misc]
    assert principal == Principal(id="key_1", role=Role.STAFF, name="n")


def test_command_line_principal_is_an_admin_recorded_as_cli() -> None:
    operator = Principal.command_line()
    assert operator.id == "cli"
    assert operator.role is Role.ADMIN
    assert operator.is_staff
    assert not operator.is_customer
    assert operator.customer_id is None
