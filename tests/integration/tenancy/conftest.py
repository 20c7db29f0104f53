from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from tenancy.app import create_app
from tenancy.settings import TenancySettings

from tests.support.apps import serve
from tests.support.relay import relay_settings

BASE_DOMAIN = "shops.test"


def tenancy_settings(stack_env: dict[str, str], **overrides: Any) -> TenancySettings:
    values: dict[str, Any] = {
        "platform_database_url": stack_env["PLATFORM_DATABASE_URL"],
        "shared_database_url": stack_env["SHARED_DATABASE_URL"],
        "kafka_bootstrap_servers": stack_env["KAFKA_BOOTSTRAP_SERVERS"],
        "base_domain": BASE_DOMAIN,
        **relay_settings(stack_env),
    }
    return TenancySettings(**(values | overrides))


@pytest.fixture(scope="module")
async def tenancy(stack_env: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(create_app(tenancy_settings(stack_env, max_body_bytes=64 * 1024))) as client:
        yield client
