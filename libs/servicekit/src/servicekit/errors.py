"""Domain errors: what a use case or a domain rule says when it refuses. Nothing HTTP here.

Use cases raise these; `servicekit.problems` is the one place that turns them into RFC 9457 problem
details (the status codes live there, not here). `extra` travels into the problem body as members
(`field`, `errors`, `current_status`, ...), so a client can tell which input was refused.
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """A request the service refuses for a reason the caller can act on."""

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class NotFound(DomainError):
    """The thing named does not exist (for this tenant)."""


class Conflict(DomainError):
    """The request contradicts the current state."""


class AlreadyExists(Conflict):
    """A unique value is taken; `field` names it."""

    def __init__(self, detail: str, *, field: str, **extra: Any) -> None:
        super().__init__(detail, field=field, **extra)
        self.field = field


class InvalidTransition(Conflict):
    """A state machine refuses the move from the current state to the one asked for."""


class Invalid(DomainError):
    """Well-formed input the rules refuse (an unknown reference, an amount too large, ...).

    `errors` name the fields: `[{"field": "items.0.product_id", "message": ..., "type": ...}]`."""

    def __init__(self, detail: str, *, errors: list[dict[str, str]] | None = None, **extra: Any) -> None:
        if errors is not None:
            extra["errors"] = errors
        super().__init__(detail, **extra)
        self.errors = errors or []

    @classmethod
    def of_field(cls, field: str, message: str, kind: str) -> Invalid:
        return cls(f"{field}: {message}", errors=[{"field": field, "message": message, "type": kind}])


class InvalidCursor(DomainError):
    """A pagination cursor this service did not hand out (or for another listing)."""

    def __init__(self, reason: str) -> None:
        super().__init__(
            f"cursor is not valid: {reason}",
            errors=[{"field": "cursor", "message": reason, "type": "invalid_cursor"}],
        )
        self.reason = reason
