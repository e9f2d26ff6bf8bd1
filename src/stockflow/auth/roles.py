"""Roles and the authenticated caller. Pure: the permission table itself is enforced where
each operation is declared (routers) and, for ownership, in the services."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    ADMIN = "admin"
    STAFF = "staff"
    SERVICE = "service"
    CUSTOMER = "customer"


STAFF_ROLES = frozenset({Role.ADMIN, Role.STAFF})
ALL_ROLES = frozenset(Role)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: an API key, or an operator at the command line."""

    id: str
    role: Role
    name: str
    customer_id: str | None = None

    @property
    def is_staff(self) -> bool:
        return self.role in STAFF_ROLES

    @property
    def is_customer(self) -> bool:
        return self.role is Role.CUSTOMER

    @classmethod
    def command_line(cls) -> Principal:
        """The operator running a ``stockflow`` command: full rights, recorded as such."""
        return cls(id="cli", role=Role.ADMIN, name="command line")

    @classmethod
    def worker(cls) -> Principal:
        """The background worker, acting on its own (cancelling an unpaid order, say)."""
        return cls(id="worker", role=Role.ADMIN, name="worker")
