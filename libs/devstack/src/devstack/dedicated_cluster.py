"""A second local PostgreSQL cluster for dedicated databases: "another server", as the seed gives an
enterprise tenant an instance of its own. Tests of cross-server moves start one beside the stack's.

It has the stack's roles with the stack's passwords (the same `credentials.json`): the schema owner
that provisioning makes each dedicated database's owner, and the outbox relay's role, whose
credentials the services reuse on every dedicated server (`servicekit.relay.dedicated_relay_url`).
It holds no platform or shared schema: only the `tenant_<hex>` databases the migrator provisions.

    cluster = DedicatedCluster(config, port=55433, state_dir=tmp / "dedicated")
    urls = cluster.up()     # DEDICATED_ADMIN/OWNER_DATABASE_URL, DEDICATED_DATABASE_URL_TEMPLATE
    ...
    cluster.down()
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

from devstack import credentials, postgres
from devstack.config import HOST, Config
from devstack.credentials import SUPERUSER
from devstack.postgres import LocalPostgres, PgUrl

URL_KEYS = ("DEDICATED_ADMIN_DATABASE_URL", "DEDICATED_OWNER_DATABASE_URL", "DEDICATED_DATABASE_URL_TEMPLATE")


class DedicatedCluster:
    def __init__(self, config: Config, *, port: int, state_dir: Path) -> None:
        self._credentials = credentials.load_or_create(config.credentials_file)
        self.config = dataclasses.replace(config, state_dir=state_dir, pg_port=port)
        self.port = port
        self.server = LocalPostgres(self.config, self._credentials)

    def urls(self) -> dict[str, str]:
        """The migrator's two elevated URLs on this server and the services' dedicated URL template."""
        admin = PgUrl(SUPERUSER, self._credentials.password(SUPERUSER), HOST, self.port, "postgres").render()
        owner = postgres.database_urls(admin, self._credentials, {})["OWNER_DATABASE_URL"]
        return {
            "DEDICATED_ADMIN_DATABASE_URL": admin,
            "DEDICATED_OWNER_DATABASE_URL": owner,
            "DEDICATED_DATABASE_URL_TEMPLATE": f"postgresql://{{role}}:{{password}}@{HOST}:{self.port}/{{database}}",
        }

    def up(self) -> dict[str, str]:
        """Start it (initialising it the first time) and create the stack's roles there; idempotent."""
        self.server.preflight()
        self.server.prepare()
        self.server.start()
        urls = self.urls()
        asyncio.run(self._bootstrap(urls["DEDICATED_ADMIN_DATABASE_URL"]))
        return urls

    async def _bootstrap(self, admin_url: str) -> None:
        urls = postgres.database_urls(admin_url, self._credentials, {})
        urls |= postgres.relay_urls(urls, self._credentials, {})
        await postgres.wait_ready(admin_url, pid=self.server.running_pid(), log_file=self.config.pg_log)
        # The same roles (and empty platform/shared databases, which the relay's grants name) as the
        # stack's own cluster: a dedicated database is then provisioned there exactly as on the first.
        await postgres.bootstrap(urls)
        await postgres.bootstrap_relay(urls)

    def down(self) -> None:
        self.server.stop()
