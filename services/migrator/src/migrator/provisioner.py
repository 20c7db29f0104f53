"""Where dedicated databases come from: a small interface, so a Kubernetes backend (CloudNativePG
`Database` and managed-role objects) can replace the SQL one without touching the phases.

`SqlProvisioner` runs `CREATE DATABASE`/`CREATE ROLE` with the admin URL and the dedicated schema's
Alembic history with the owner URL (tenantdb.provisioning), on the dedicated cluster: the shared
server by default, another one when `DEDICATED_ADMIN_DATABASE_URL`/`DEDICATED_OWNER_DATABASE_URL` point
there (with `DEDICATED_DATABASE_URL_TEMPLATE` telling the services the same).
"""

from __future__ import annotations

import uuid
from typing import Protocol

import asyncpg
from sqlalchemy.engine import make_url
from tenantdb.provisioning import drop_dedicated, provision_dedicated
from tenantschema.urls import libpq_url, with_database

from migrator.settings import MigratorSettings


class Provisioner(Protocol):
    def owner_url(self, database: str) -> str:
        """The schema owner's URL of a database (shared or dedicated)."""
        ...

    def admin_url(self, database: str) -> str:
        """The admin's URL of a database (shared or dedicated)."""
        ...

    async def provision(self, tenant_id: uuid.UUID) -> str:
        """Make (or finish making) the tenant's dedicated database at the dedicated head; idempotent."""
        ...

    async def drop(self, tenant_id: uuid.UUID) -> None:
        """Drop the tenant's dedicated database and role, if there."""
        ...

    async def dedicated_databases(self) -> list[str]:
        """Every tenant_<hex> database there is (reconciliation looks for orphans among them)."""
        ...


class SqlProvisioner:
    def __init__(self, settings: MigratorSettings) -> None:
        self._shared_database = make_url(settings.shared_database_url).database
        self._admin = settings.admin_database_url
        self._owner = settings.owner_database_url
        self._dedicated_admin = settings.dedicated_admin_database_url or settings.admin_database_url
        self._dedicated_owner = settings.dedicated_owner_database_url or settings.owner_database_url
        secret = settings.dedicated_password_secret
        if secret is None:
            raise ValueError(
                "DEDICATED_PASSWORD_SECRET must be set: dedicated roles' passwords derive from it"
            )
        self._secret = secret.get_secret_value()

    def _dedicated(self, database: str) -> bool:
        return database != self._shared_database

    def owner_url(self, database: str) -> str:
        base = self._dedicated_owner if self._dedicated(database) else self._owner
        return libpq_url(with_database(base, database))

    def admin_url(self, database: str) -> str:
        base = self._dedicated_admin if self._dedicated(database) else self._admin
        return libpq_url(with_database(base, database))

    async def provision(self, tenant_id: uuid.UUID) -> str:
        return await provision_dedicated(
            self._dedicated_admin, self._dedicated_owner, tenant_id, self._secret
        )

    async def drop(self, tenant_id: uuid.UUID) -> None:
        await drop_dedicated(self._dedicated_admin, tenant_id)

    async def dedicated_databases(self) -> list[str]:
        connection = await asyncpg.connect(libpq_url(self._dedicated_admin))
        try:
            rows = await connection.fetch(
                r"SELECT datname FROM pg_database WHERE datname ~ '^tenant_[0-9a-f]{32}$' ORDER BY datname"
            )
        finally:
            await connection.close()
        return [row["datname"] for row in rows]
