from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from tenancy.app import create_app
from tenancy.settings import TenancySettings

from tests.support.apps import serve
from tests.support.databases import role_settings
from tests.support.relay import relay_settings

BASE_DOMAIN = "shops.test"


def tenancy_settings(stack_env: dict[str, str], **overrides: Any) -> TenancySettings:
    values: dict[str, Any] = {
        **role_settings(stack_env, "tenancy"),
        "kafka_bootstrap_servers": stack_env["KAFKA_BOOTSTRAP_SERVERS"],
        "base_domain": BASE_DOMAIN,
        **relay_settings(stack_env),
    }
    return TenancySettings(**(values | overrides))


@pytest.fixture(scope="module")
async def tenancy(stack_env: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(create_app(tenancy_settings(stack_env, max_body_bytes=64 * 1024))) as client:
        yield client
