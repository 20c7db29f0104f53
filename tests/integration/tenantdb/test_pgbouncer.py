"""tenantdb through PgBouncer in transaction pooling mode (Debian's pgbouncer, no protocol-level
prepared statements): units of work run, tenants never see each other, nothing relies on session state."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import insert, select
from sqlalchemy.engine import make_url
from tenantschema.tables import products

from tests.integration.tenantdb.conftest import MakeTenant, MakeTenantDB
from tests.support.processes import free_port

PGBOUNCER = shutil.which("pgbouncer") or next(
    (p for p in ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer") if os.path.exists(p)), None
)


@pytest.fixture(scope="module")
def pgbouncer_url(stack_env: dict[str, str]) -> Iterator[str]:
    if PGBOUNCER is None:
        pytest.skip("pgbouncer is not installed (apt-get install pgbouncer; .ci/run installs it)")
    shared = make_url(stack_env["SHARED_DATABASE_URL"])
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="pgbouncer-"))
    (workdir / "userlist.txt").write_text(f'"{shared.username}" "{shared.password}"\n')
    (workdir / "pgbouncer.ini").write_text(
        f"""[databases]
shared = host={shared.host} port={shared.port} dbname={shared.database}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {workdir}/userlist.txt
pool_mode = transaction
default_pool_size = 2
max_client_conn = 100
logfile = {workdir}/pgbouncer.log
pidfile = {workdir}/pgbouncer.pid
"""
    )
    command = [PGBOUNCER, str(workdir / "pgbouncer.ini")]
    if os.geteuid() == 0:  # pgbouncer refuses to run as root
        shutil.chown(workdir, "postgres")
        for child in workdir.iterdir():
            shutil.chown(child, "postgres")
        command = ["runuser", "-u", "postgres", "--", *command]
    # Its console output goes to a file: an unread pipe fills up and blocks pgbouncer mid-test.
    console = open(workdir / "console.log", "wb")  # noqa: SIM115  (closed in the finally below)
    process = subprocess.Popen(command, stdout=console, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 15
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"pgbouncer did not start: {(workdir / 'console.log').read_text()}")
            time.sleep(0.1)
    try:
        yield shared.set(host="127.0.0.1", port=port).render_as_string(hide_password=False)
    finally:
        process.terminate()
        process.wait(10)
        console.close()
        shutil.rmtree(workdir, ignore_errors=True)


async def test_units_of_work_through_pgbouncer_stay_isolated(
    pgbouncer_url: str, make_tenantdb: MakeTenantDB, make_tenant: MakeTenant
) -> None:
    tdb = make_tenantdb(shared_database_url=pgbouncer_url, pgbouncer=True)
    tenants = [await make_tenant("shared") for _ in range(4)]

    async def worker(index: int) -> None:
        for round_ in range(60):
            tenant = tenants[(index + round_) % len(tenants)]
            async with tdb.unit_of_work(tenant) as uow:
                await uow.connection.execute(
                    insert(products).values(name=f"{tenant.hex[:8]}", sku=uuid.uuid4().hex, price=Decimal(1))
                )
                names = set((await uow.connection.execute(select(products.c.name))).scalars())
                assert names == {tenant.hex[:8]}, "another tenant's rows through PgBouncer"
                if round_ % 3:
                    await uow.commit()

    # More concurrent units of work than PgBouncer has server connections: they share and interleave.
    await asyncio.wait_for(asyncio.gather(*(worker(i) for i in range(8))), 60)
    for tenant in tenants:
        async with tdb.unit_of_work(tenant, readonly=True) as uow:
            names = set((await uow.connection.execute(select(products.c.name))).scalars())
            assert names == {tenant.hex[:8]}
