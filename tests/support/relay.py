"""The outbox relay's credentials from the stack, for apps the tests build in-process."""

from __future__ import annotations

from typing import Any


def relay_settings(stack_env: dict[str, str]) -> dict[str, Any]:
    """Settings fields: the relay connects as its own role (the services' role may not claim rows)."""
    return {
        "relay_platform_database_url": stack_env["RELAY_PLATFORM_DATABASE_URL"],
        "relay_shared_database_url": stack_env["RELAY_SHARED_DATABASE_URL"],
    }
