"""Database error helpers shared by the services."""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError

UNIQUE_VIOLATION = "23505"
FOREIGN_KEY_VIOLATION = "23503"


def violated_constraint(error: DBAPIError, sqlstate: str = UNIQUE_VIOLATION) -> str | None:
    """The name of the constraint a statement violated with `sqlstate`, else None."""
    orig = error.orig
    if getattr(orig, "sqlstate", None) != sqlstate:
        return None
    cause = getattr(orig, "__cause__", None)
    name = getattr(cause, "constraint_name", None) or getattr(orig, "constraint_name", None)
    return str(name) if name else ""
