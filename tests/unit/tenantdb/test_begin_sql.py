"""What the one round trip that opens a unit of work carries, per placement and mode."""

from __future__ import annotations

import uuid

import pytest
from tenantdb.unit_of_work import _begin_sql, _read_begin_sql

TENANT = uuid.UUID("0b7e3c1e-9a4f-4c1e-8f7a-2d7e5b7c9a10")
CONTEXT = f"SET LOCAL app.current_tenant_id = '{TENANT}'"


def test_a_shared_read_sets_the_context_and_skips_the_fence() -> None:
    sql = _read_begin_sql(TENANT, True, False)
    assert sql == f"BEGIN ISOLATION LEVEL READ COMMITTED READ ONLY; {CONTEXT}"


def test_a_dedicated_read_is_a_plain_begin() -> None:
    assert _read_begin_sql(TENANT, False, False) == "BEGIN ISOLATION LEVEL READ COMMITTED READ ONLY"


@pytest.mark.parametrize("shared", [True, False])
def test_fenced_reads_check_the_fence_without_taking_the_lock(shared: bool) -> None:
    sql = _read_begin_sql(TENANT, shared, True)
    assert sql.endswith(f"SELECT tenantdb_enter('{TENANT}'::uuid, false, 1)")
    assert (CONTEXT in sql) is shared


@pytest.mark.parametrize("shared", [True, False])
def test_a_write_waits_for_the_lock_at_most_its_budget(shared: bool) -> None:
    sql = _begin_sql(TENANT, shared, False, True, 4321)
    assert sql.startswith("BEGIN ISOLATION LEVEL READ COMMITTED READ WRITE; ")
    assert sql.endswith(f"SELECT tenantdb_enter('{TENANT}'::uuid, true, 4321)")
    assert (CONTEXT in sql) is shared
