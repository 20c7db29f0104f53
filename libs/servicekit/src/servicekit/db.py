"""Database error helpers shared by the services' repositories."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from sqlalchemy.exc import DBAPIError, IntegrityError

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


class UniqueViolation(Exception):
    """A unique constraint refused the row; `field` is the column it is about."""

    def __init__(self, field: str) -> None:
        super().__init__(field)
        self.field = field


class ForeignKeyViolation(Exception):
    """A reference to a row that does not exist; `field` is the referencing column."""

    def __init__(self, field: str) -> None:
        super().__init__(field)
        self.field = field


@contextmanager
def constraint_errors(unique: Mapping[str, str], foreign: Mapping[str, str] | None = None) -> Iterator[None]:
    """Turn violations of the named constraints into UniqueViolation / ForeignKeyViolation naming the
    column (`{constraint name: column}`); any other IntegrityError passes through."""
    try:
        yield
    except IntegrityError as error:
        name = violated_constraint(error, UNIQUE_VIOLATION)
        if name is not None and name in unique:
            raise UniqueViolation(unique[name]) from error
        name = violated_constraint(error, FOREIGN_KEY_VIOLATION)
        if foreign and name is not None and name in foreign:
            raise ForeignKeyViolation(foreign[name]) from error
        raise
