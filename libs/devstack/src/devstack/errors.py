"""The one error type devstack raises for problems a developer can fix."""

from __future__ import annotations


class DevstackError(Exception):
    """A failure with a one-line, actionable message.

    `details` holds optional extra lines (for example the last lines of a server log) that the CLI
    prints after the message.
    """

    def __init__(self, message: str, details: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: list[str] = list(details or [])

    def __str__(self) -> str:
        return self.message
