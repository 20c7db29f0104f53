"""Shared fixtures: the dev stack (started on demand by devstack) and its settings.

Tests under tests/integration, tests/e2e and tests/unit get the `integration`, `e2e` and `unit` markers.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import devstack
import pytest

pytest_plugins = ["tests.support.watchdog", "tests.support.hostile"]

_TESTS = Path(__file__).parent
_FOLDER_MARKERS = {"integration": "integration", "unit": "unit", "e2e": "e2e"}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        try:
            relative = Path(item.path).resolve().relative_to(_TESTS.resolve())
        except ValueError:
            continue
        marker = _FOLDER_MARKERS.get(relative.parts[0]) if len(relative.parts) > 1 else None
        if marker is not None:
            item.add_marker(getattr(pytest.mark, marker))


@pytest.fixture(scope="session", autouse=True)
async def _watched_loop() -> None:
    """The session's event loop, for the watchdog's task dump when a test hangs."""
    from tests.support import watchdog  # a plugin (pytest_plugins): imported once pytest loaded it

    watchdog.remember_loop(asyncio.get_running_loop())


@pytest.fixture(scope="session")
def stack_env() -> dict[str, str]:
    """The stack.env values; starts PostgreSQL and Kafka first if they are not up."""
    return devstack.ensure_stack()


@pytest.fixture(scope="session")
def admin_url(stack_env: dict[str, str]) -> str:
    return stack_env["ADMIN_DATABASE_URL"]


@pytest.fixture(scope="session")
def owner_url(stack_env: dict[str, str]) -> str:
    return stack_env["OWNER_DATABASE_URL"]


@pytest.fixture(scope="session")
def platform_url(stack_env: dict[str, str]) -> str:
    return stack_env["PLATFORM_DATABASE_URL"]


@pytest.fixture(scope="session")
def shared_url(stack_env: dict[str, str]) -> str:
    return stack_env["SHARED_DATABASE_URL"]


@pytest.fixture(scope="session")
def kafka_bootstrap(stack_env: dict[str, str]) -> str:
    return stack_env["KAFKA_BOOTSTRAP_SERVERS"]


from tests.support.databases import fresh_database  # noqa: E402, F401  (a fixture for every tier)
from tests.support.processes import isolated  # noqa: E402, F401  (a stack of a module's own)
