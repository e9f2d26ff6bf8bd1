"""Entity tags for optimistic concurrency: ``ETag`` out, ``If-Match`` in. Pure."""

from __future__ import annotations

from stockflow.errors import PreconditionFailed


def etag(resource_id: str, version: int) -> str:
    """A strong ETag that changes whenever the resource's version does."""
    return f'"{resource_id}.{version}"'


def require_match(if_match: str | None, current: str, *, what: str) -> None:
    """Refuse a change made against an older version; no ``If-Match`` means no condition.

    ``If-Match`` may list several tags, or ``*`` for "any current version".
    """
    if if_match is None:
        return
    candidates = [part.strip() for part in if_match.split(",")]
    if "*" not in candidates and current not in candidates:
        raise PreconditionFailed(
            f"{what} has changed since that ETag was issued.", current_etag=current
        )
