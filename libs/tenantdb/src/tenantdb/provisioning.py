"""Create and drop a tenant's dedicated database: its own role, its own credentials, the dedicated
schema at head. Used by the migrator (and tests); needs a superuser (or CREATEROLE + CREATEDB) URL
and the schema owner's URL."""

from __future__ import annotations

import uuid

import asyncpg
from sqlalchemy.engine import make_url
from tenantschema import migrations
from tenantschema.render import quote_ident
from tenantschema.roles import RELAY_ROLE
from tenantschema.urls import libpq_url, with_database

from tenantdb.placement import dedicated_database_name, dedicated_password


async def provision_dedicated(admin_url: str, owner_url: str, tenant_id: uuid.UUID, secret: str) -> str:
    """Make (or finish making) the tenant's dedicated database; idempotent. Returns its name."""
    database = dedicated_database_name(tenant_id)
    role = quote_ident(database)
    owner = make_url(owner_url).username
    if owner is None:
        raise ValueError("the owner URL names no user")
    password = dedicated_password(secret, database)  # hex digits only: safe as a literal
    admin = await asyncpg.connect(libpq_url(admin_url))
    try:
        if await admin.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", database):
            await admin.execute(f"ALTER ROLE {role} WITH LOGIN PASSWORD '{password}'")
        else:
            await admin.execute(
                f"CREATE ROLE {role} LOGIN PASSWORD '{password}' "
                "NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOINHERIT"
            )
        if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database):
            await admin.execute(f"CREATE DATABASE {role} OWNER {quote_ident(owner)}")
        await admin.execute(f"REVOKE ALL ON DATABASE {role} FROM PUBLIC")
        await admin.execute(f"GRANT CONNECT ON DATABASE {role} TO {role}")
        # The outbox relay drains every dedicated outbox as its own role (EXECUTE granted by the history).
        await admin.execute(f"GRANT CONNECT ON DATABASE {role} TO {quote_ident(RELAY_ROLE)}")
    finally:
        await admin.close()

    database_owner_url = libpq_url(with_database(owner_url, database))
    conn = await asyncpg.connect(database_owner_url)
    try:
        await conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        await conn.execute(f"GRANT USAGE ON SCHEMA public TO {role}")
    finally:
        await conn.close()
    await migrations.upgrade_async(database_owner_url, "dedicated", app_role=database)
    return database


async def drop_dedicated(admin_url: str, tenant_id: uuid.UUID) -> None:
    database = dedicated_database_name(tenant_id)
    role = quote_ident(database)
    admin = await asyncpg.connect(libpq_url(admin_url))
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {role} WITH (FORCE)")
        await admin.execute(f"DROP ROLE IF EXISTS {role}")
    finally:
        await admin.close()
