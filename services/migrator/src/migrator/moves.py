"""Moving a tenant's rows between two databases, on plain asyncpg connections: capture, chunked copy,
catch-up, verification. Order-independent by construction (README.md, "Capture"):

- *capture*: triggers on the source record the primary key of every row of the tenant that changes
  (insert, update, delete) into a change table of the migration, in the writer's own transaction;
- *copy*: binary COPY of each table in primary-key order, chunk by chunk, each chunk replacing the
  same key range on the target (so a chunk copied twice after a crash is the same chunk);
- *catch-up*: take a batch of captured keys, re-read the current rows of those keys on the source,
  replace them on the target (a key gone from the source is deleted), then delete exactly the change
  rows that were read. A change row committed late (sequence values commit out of order) is simply
  read by a later batch; a crash between the target's commit and the delete replays the batch.
- *verify*: counts and md5 checksums over a canonical text encoding of each row (`ROW(...)::text`
  with UTC timestamps and ISO dates: JSONB in its normalized text form, numerics exact, NULL distinct
  from every value), source vs target, by primary-key ranges; inside the freeze, per key.

Source reads run as the schema owner inside a transaction that sets the tenant's RLS context (the
shared tables' RLS is FORCEd, so the owner sees exactly that tenant's rows); target writes run as the
admin with `session_replication_role = replica` (no foreign-key triggers while rows arrive in key
order, none of the split-brain guard's either).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import asyncpg
import structlog
from tenantschema.render import quote_ident
from tenantschema.tables import TENANT_TABLES, metadata

from migrator.domain import ObjectNames, Variant, migration_id_of

log = structlog.get_logger("migrator.moves")

ZERO_ID = uuid.UUID(int=0)
# The largest key of a chunk (PostgreSQL 15 has no max(uuid)).
_LAST_ID = "(array_agg(id ORDER BY id DESC))[1]"
MOVER_APPLICATION_NAME = "migrator:mover"
# What makes ROW(...)::text canonical on both sides (whatever the servers' defaults).
CANONICAL_SETTINGS = {"TimeZone": "UTC", "DateStyle": "ISO, YMD", "IntervalStyle": "postgres"}
# Every chunk of the copy and the verify is `WHERE tenant filter AND id > $1 ORDER BY id LIMIT n`. A
# tenant that grew quickly (the usual reason to move it) has no statistics yet: the planner then
# estimates one row, may read all the tenant's rows through another (tenant_id, ...) index, hash and
# sort them, for every chunk (a 100,000-product verify took 8 s instead of 1). Without explicit sorts
# the only plan left is the keyset walk of the (tenant_id, id) index or the primary key; the sorts
# inside aggregates (string_agg ... ORDER BY) are not affected.
PLANNER_SETTINGS = {"enable_sort": "off"}
# DDL of the move's own objects (the change table, the capture function) waits this long for a lock.
DDL_LOCK_TIMEOUT = "2s"
# DDL on live tenant tables (the capture's triggers) takes a lock that every writer of the table
# (CREATE TRIGGER), or every statement (DROP TRIGGER), queues behind while it waits: on the shared
# database, every tenant's. So it waits at most TABLE_LOCK_TIMEOUT_MS, steps out of the queue and
# tries again after a pause: other tenants wait at most that long per attempt, however long the
# blocker holds on. The usual blocker is autovacuum, which PostgreSQL cancels for a waiting lock
# request only when that request's deadlock check runs, after deadlock_timeout (1 s by default: the
# shared tables' writers stalled that long, measured). The DDL lowers its own deadlock_timeout below
# its lock timeout when its role may (superuser, or PostgreSQL 15's GRANT SET ON PARAMETER), so the
# autovacuum is cancelled within the first attempt.
TABLE_LOCK_TIMEOUT_MS = 50
TABLE_DEADLOCK_TIMEOUT_MS = 20
TABLE_LOCK_ATTEMPTS = 120  # pauses grow to 1 s: about two minutes, then the phase's own retry
_TABLE_LOCK_FIRST_PAUSE = 0.02
KINDS: tuple[Literal["w", "u", "d"], ...] = ("w", "u", "d")


def table_columns(table: str) -> list[str]:
    """The tenant-owned columns of a table (the dedicated shape: no tenant_id)."""
    return [column.name for column in metadata.tables[table].columns]


def _column_list(table: str) -> str:
    return ", ".join(quote_ident(name) for name in table_columns(table))


@dataclass(frozen=True)
class Endpoint:
    """One side of a move: a database holding (or about to hold) the tenant."""

    variant: Variant
    database: str
    owner_url: str
    admin_url: str
    tenant_id: uuid.UUID

    @property
    def tenant_filter(self) -> str:
        """The WHERE clause that selects the tenant's rows (the id was parsed as a UUID: a literal)."""
        return f"tenant_id = '{self.tenant_id}'::uuid" if self.variant == "shared" else "TRUE"

    async def connect_reader(self) -> asyncpg.Connection:
        return await _connect(self.owner_url)

    async def connect_writer(self) -> asyncpg.Connection:
        return await _connect(self.admin_url, replica=True)


async def _connect(url: str, *, replica: bool = False) -> asyncpg.Connection:
    settings = {"application_name": MOVER_APPLICATION_NAME, **CANONICAL_SETTINGS, **PLANNER_SETTINGS}
    if replica:
        settings["session_replication_role"] = "replica"
    connection: asyncpg.Connection = await asyncpg.connect(url, server_settings=settings, timeout=10)
    return connection


@asynccontextmanager
async def tenant_transaction(connection: asyncpg.Connection, endpoint: Endpoint) -> AsyncIterator[None]:
    """A transaction in the tenant's RLS context (shared), or a plain one (dedicated)."""
    async with connection.transaction():
        if endpoint.variant == "shared":
            await connection.execute(
                "SELECT set_config('app.current_tenant_id', $1, true)", str(endpoint.tenant_id)
            )
        yield


# ---------------------------------------------------------------- capture


def capture_setup_ddl(names: ObjectNames) -> list[str]:
    """The change table and the trigger function: new objects only, no lock on a tenant table."""
    changes = names.changes
    return [
        f"""CREATE TABLE {changes} (
               seq bigserial PRIMARY KEY,
               table_name text NOT NULL,
               id uuid NOT NULL
           )""",
        f"REVOKE ALL ON {changes} FROM PUBLIC",
        # SECURITY DEFINER: the writers' roles need no grant on the change table.
        f"""CREATE FUNCTION {names.capture_function}() RETURNS trigger
               LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
               AS $$
               BEGIN
                   IF TG_OP <> 'INSERT' THEN
                       INSERT INTO {changes} (table_name, id) VALUES (TG_ARGV[0], OLD.id);
                   END IF;
                   IF TG_OP <> 'DELETE' AND (TG_OP = 'INSERT' OR NEW.id IS DISTINCT FROM OLD.id) THEN
                       INSERT INTO {changes} (table_name, id) VALUES (TG_ARGV[0], NEW.id);
                   END IF;
                   RETURN NULL;
               END
               $$""",
        f"REVOKE ALL ON FUNCTION {names.capture_function}() FROM PUBLIC",
    ]


def capture_table_ddl(source: Endpoint, names: ObjectNames, table: str) -> list[str]:
    """One table's capture triggers (CREATE TRIGGER locks that table, SHARE ROW EXCLUSIVE)."""
    function = names.capture_function
    if source.variant == "shared":
        # Other tenants' writes pay only the WHEN test, no function call.
        tenant = f"'{source.tenant_id}'::uuid"
        return [
            f"CREATE TRIGGER {names.trigger(table, 'w')} AFTER INSERT ON {table} FOR EACH ROW "
            f"WHEN (NEW.tenant_id = {tenant}) EXECUTE FUNCTION {function}('{table}')",
            f"CREATE TRIGGER {names.trigger(table, 'u')} AFTER UPDATE ON {table} FOR EACH ROW "
            f"WHEN (NEW.tenant_id = {tenant} OR OLD.tenant_id = {tenant}) "
            f"EXECUTE FUNCTION {function}('{table}')",
            f"CREATE TRIGGER {names.trigger(table, 'd')} AFTER DELETE ON {table} FOR EACH ROW "
            f"WHEN (OLD.tenant_id = {tenant}) EXECUTE FUNCTION {function}('{table}')",
        ]
    return [
        f"CREATE TRIGGER {names.trigger(table, 'w')} AFTER INSERT OR UPDATE OR DELETE ON {table} "
        f"FOR EACH ROW EXECUTE FUNCTION {function}('{table}')"
    ]


def drop_table_capture_ddl(names: ObjectNames, table: str) -> list[str]:
    return [f"DROP TRIGGER IF EXISTS {names.trigger(table, kind)} ON {table}" for kind in KINDS]


def drop_capture_setup_ddl(names: ObjectNames) -> list[str]:
    return [f"DROP FUNCTION IF EXISTS {names.capture_function}()", f"DROP TABLE IF EXISTS {names.changes}"]


async def capture_installed(connection: asyncpg.Connection, names: ObjectNames) -> bool:
    return bool(await connection.fetchval("SELECT to_regclass($1) IS NOT NULL", names.changes))


async def _captured_tables(connection: asyncpg.Connection, names: ObjectNames) -> set[str]:
    """The tenant tables that carry a trigger of the migration (a table's triggers are created and
    dropped in one transaction: one of them means all)."""
    triggers = {names.trigger(table, kind): table for table in TENANT_TABLES for kind in KINDS}
    rows = await connection.fetch(
        "SELECT tgname FROM pg_trigger WHERE tgname = any($1::text[])", list(triggers)
    )
    return {triggers[row["tgname"]] for row in rows}


async def run_ddl(connection: asyncpg.Connection, statements: Iterable[str]) -> None:
    """One transaction, waiting at most DDL_LOCK_TIMEOUT for a lock (LockNotAvailableError: retried)."""
    async with connection.transaction():
        await connection.execute(f"SET LOCAL lock_timeout = '{DDL_LOCK_TIMEOUT}'")
        for statement in statements:
            await connection.execute(statement)


async def may_set(connection: asyncpg.Connection, parameter: str) -> bool:
    """Whether the connection's role may SET a superuser-context parameter."""
    try:
        return bool(await connection.fetchval("SELECT has_parameter_privilege($1, 'SET')", parameter))
    except asyncpg.UndefinedFunctionError:  # before PostgreSQL 15: superusers only
        return bool(await connection.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user"))


async def run_table_ddl(
    connection: asyncpg.Connection, statements: Sequence[str], *, lower_deadlock_timeout: bool | None = None
) -> int:
    """`statements` (locking one live table) in one transaction that never keeps the table's other
    users waiting longer than TABLE_LOCK_TIMEOUT_MS per attempt (see there); returns the attempts.
    `lower_deadlock_timeout`: whether the role may (asked when not given)."""
    if lower_deadlock_timeout is None:
        lower_deadlock_timeout = await may_set(connection, "deadlock_timeout")
    pause = _TABLE_LOCK_FIRST_PAUSE
    attempt = 1
    while True:
        try:
            async with connection.transaction():
                await connection.execute(f"SET LOCAL lock_timeout = '{TABLE_LOCK_TIMEOUT_MS}ms'")
                if lower_deadlock_timeout:
                    await connection.execute(f"SET LOCAL deadlock_timeout = '{TABLE_DEADLOCK_TIMEOUT_MS}ms'")
                for statement in statements:
                    await connection.execute(statement)
            if attempt > 1:
                log.info("table lock taken after waiting", statement=statements[0][:80], attempts=attempt)
            return attempt
        except asyncpg.LockNotAvailableError:
            if attempt >= TABLE_LOCK_ATTEMPTS:
                raise
        # Jittered: two moves' DDL, or a move's and a deployment's, do not retry in step.
        await asyncio.sleep(pause * random.uniform(0.5, 1.5))
        pause = min(pause * 2, 1.0)
        attempt += 1


async def install_capture(source: Endpoint, names: ObjectNames) -> None:
    """The change table and function, then each table's triggers in a transaction of its own: a
    transaction holding one tenant table's lock never waits for another's, so it can never be part of
    a deadlock with the services' transactions (which take those tables in their own orders; one
    transaction locking them all did deadlock with an order being placed). Idempotent: what a killed
    run made is kept, what it did not is made; the copy starts only once every table is captured."""
    connection = await source.connect_reader()
    try:
        if not await capture_installed(connection, names):
            await run_ddl(connection, capture_setup_ddl(names))
        captured = await _captured_tables(connection, names)
        lower_deadlock_timeout = await may_set(connection, "deadlock_timeout")
        for table in TENANT_TABLES:
            if table not in captured:
                await run_table_ddl(
                    connection,
                    capture_table_ddl(source, names, table),
                    lower_deadlock_timeout=lower_deadlock_timeout,
                )
    finally:
        await connection.close()


async def drop_capture(owner_url: str, names: ObjectNames) -> None:
    """The reverse, one table per transaction for the same reason; only where a trigger of the
    migration is left (DROP TRIGGER IF EXISTS still locks the table, every reader out)."""
    connection = await _connect(owner_url)
    try:
        captured = await _captured_tables(connection, names)
        lower_deadlock_timeout = await may_set(connection, "deadlock_timeout")
        for table in TENANT_TABLES:
            if table in captured:
                await run_table_ddl(
                    connection,
                    drop_table_capture_ddl(names, table),
                    lower_deadlock_timeout=lower_deadlock_timeout,
                )
        await run_ddl(connection, drop_capture_setup_ddl(names))
    finally:
        await connection.close()


async def orphaned_objects(connection: asyncpg.Connection) -> set[uuid.UUID]:
    """Migration ids that have capture objects in this database (tables, functions or triggers)."""
    rows = await connection.fetch(
        r"""SELECT relname AS name FROM pg_class WHERE relname LIKE 'mig\_%' AND relkind = 'r'
            UNION SELECT proname FROM pg_proc WHERE proname LIKE 'mig\_%'
            UNION SELECT tgname FROM pg_trigger WHERE tgname LIKE 'mig\_%'"""
    )
    found = {migration_id_of(row["name"]) for row in rows}
    return {found_id for found_id in found if found_id is not None}


async def lag(connection: asyncpg.Connection, names: ObjectNames) -> int:
    value: int = await connection.fetchval(f"SELECT count(*) FROM {names.changes}")
    return value


# ---------------------------------------------------------------- copy


async def count_rows(
    connection: asyncpg.Connection, endpoint: Endpoint, tables: Sequence[str]
) -> dict[str, int]:
    """The tenant's rows in each table, in one statement (a round trip set per table was a tenth
    of a small move)."""
    counts = ", ".join(f"(SELECT count(*) FROM {table} WHERE {endpoint.tenant_filter})" for table in tables)
    async with tenant_transaction(connection, endpoint):
        row = await connection.fetchrow(f"SELECT {counts}")
    assert row is not None
    return {table: int(row[index]) for index, table in enumerate(tables)}


async def _read_copy(
    connection: asyncpg.Connection, endpoint: Endpoint, query: str, *args: Any
) -> list[bytes]:
    parts: list[bytes] = []

    async def sink(data: bytes) -> None:
        parts.append(data)

    async with tenant_transaction(connection, endpoint):
        await connection.copy_from_query(query, *args, output=sink, format="binary")
    return parts


async def _parts(parts: list[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def _write_rows(
    connection: asyncpg.Connection, target: Endpoint, table: str, parts: list[bytes]
) -> int:
    if not parts:
        return 0
    status: str = await connection.copy_to_table(
        table, source=_parts(parts), columns=table_columns(table), format="binary"
    )
    return int(status.split()[-1])


def stream_digest() -> hashlib.blake2b:
    """The hash of a binary COPY stream (header, rows, trailer: the same bytes for the same rows of
    the same column types, in the same order)."""
    return hashlib.blake2b(digest_size=16)


async def _stream(
    reader: asyncpg.Connection,
    source: Endpoint,
    writer: asyncpg.Connection,
    table: str,
    query: str,
    *args: Any,
    digest: hashlib.blake2b,
) -> int:
    """COPY out of the source into COPY in on the target at the same time (the target's transaction
    is the caller's): the chunk never sits whole in memory and neither side waits for the other.
    `digest` (stream_digest) is updated with every byte that went to the target."""
    queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=32)

    async def produce() -> None:
        try:
            async with tenant_transaction(reader, source):
                await reader.copy_from_query(query, *args, output=queue.put, format="binary")
        finally:
            await queue.put(None)

    async def parts() -> AsyncIterator[bytes]:
        while (part := await queue.get()) is not None:
            digest.update(part)
            yield part

    producer = asyncio.create_task(produce())
    try:
        status: str = await writer.copy_to_table(
            table, source=parts(), columns=table_columns(table), format="binary"
        )
    except BaseException:
        producer.cancel()
        with contextlib.suppress(BaseException):
            await producer
        raise
    await producer
    return int(status.split()[-1])


class Chunk(NamedTuple):
    upper: uuid.UUID | None  # the chunk's last key (None: nothing left)
    written: int
    full: bool  # `rows` keys found: more may follow (otherwise this was the table's last chunk)
    digest: bytes = b""  # of the binary COPY stream the target received (chunk_digest reads it back)


async def copy_chunk(
    reader: asyncpg.Connection,
    writer: asyncpg.Connection,
    source: Endpoint,
    target: Endpoint,
    table: str,
    after: uuid.UUID,
    rows: int,
) -> Chunk:
    """Copy the next `rows` keys after `after`, in key order: the chunk is what one statement's
    snapshot holds then, and its last key is read back from the target (a key query on the source
    first was a round trip and an index scan more per chunk). The target's keys after `after` are
    deleted first, so a repeated chunk is harmless (the copy runs before any catch-up: what a crashed
    run copied past its last saved key is copied again). A chunk of fewer keys is the table's last:
    a row written after its snapshot is in the capture, which was installed before the copy began."""
    query = (
        f"SELECT {_column_list(table)} FROM {table} WHERE {source.tenant_filter} "
        f"AND id > $1 ORDER BY id LIMIT {int(rows)}"
    )
    digest = stream_digest()
    async with tenant_transaction(writer, target):
        await writer.execute(f"DELETE FROM {table} WHERE {target.tenant_filter} AND id > $1", after)
        written = await _stream(reader, source, writer, table, query, after, digest=digest)
        if not written:
            return Chunk(None, 0, False)
        upper: uuid.UUID = await writer.fetchval(
            f"SELECT id FROM {table} WHERE {target.tenant_filter} AND id > $1 ORDER BY id DESC LIMIT 1", after
        )
    return Chunk(upper, written, written >= rows, digest.digest())


async def chunk_digest(
    connection: asyncpg.Connection, endpoint: Endpoint, table: str, after: uuid.UUID, upper: uuid.UUID
) -> bytes:
    """The digest of the key range (after, upper] read back as copy_chunk streamed it: the same
    columns in key order, as binary COPY. Equal to the chunk's `digest` iff the rows are equal
    (binary COPY is each value's exact form: JSONB normalized, numerics with their scale, timestamps
    to the microsecond, NULL apart from every value), at the price of one COPY out and no
    `ROW(...)::text` of every row on either side."""
    digest = stream_digest()
    async with tenant_transaction(connection, endpoint):
        await connection.copy_from_query(
            f"SELECT {_column_list(table)} FROM {table} WHERE {endpoint.tenant_filter} "
            "AND id > $1 AND id <= $2 ORDER BY id",
            after,
            upper,
            output=_feed(digest),
            format="binary",
        )
    return digest.digest()


def _feed(digest: hashlib.blake2b) -> Callable[[bytes], Coroutine[Any, Any, None]]:
    async def feed(data: bytes) -> None:
        digest.update(data)

    return feed


# ---------------------------------------------------------------- catch-up


@dataclass
class Applied:
    changes: int = 0
    rows: int = 0
    keys: set[tuple[str, uuid.UUID]] = field(default_factory=set)


async def apply_keys(
    reader: asyncpg.Connection,
    writer: asyncpg.Connection,
    source: Endpoint,
    target: Endpoint,
    keys: dict[str, set[uuid.UUID]],
) -> int:
    """Make the target's rows of these keys what the source's are now (absent: deleted)."""
    copied: dict[str, list[bytes]] = {}
    for table, ids in keys.items():
        copied[table] = await _read_copy(
            reader,
            source,
            f"SELECT {_column_list(table)} FROM {table} WHERE {source.tenant_filter} "
            "AND id = ANY($1::uuid[])",
            list(ids),
        )
    written = 0
    async with tenant_transaction(writer, target):
        for table, ids in keys.items():
            await writer.execute(
                f"DELETE FROM {table} WHERE {target.tenant_filter} AND id = ANY($1::uuid[])",
                list(ids),
            )
            written += await _write_rows(writer, target, table, copied[table])
    return written


async def catch_up_batch(
    reader: asyncpg.Connection,
    writer: asyncpg.Connection,
    source: Endpoint,
    target: Endpoint,
    names: ObjectNames,
    limit: int,
) -> Applied:
    changes = await reader.fetch(
        f"SELECT seq, table_name, id FROM {names.changes} ORDER BY seq LIMIT {int(limit)}"
    )
    applied = Applied(changes=len(changes))
    if not changes:
        return applied
    keys: dict[str, set[uuid.UUID]] = defaultdict(set)
    for change in changes:
        keys[change["table_name"]].add(change["id"])
        applied.keys.add((change["table_name"], change["id"]))
    applied.rows = await apply_keys(reader, writer, source, target, keys)
    await reader.execute(
        f"DELETE FROM {names.changes} WHERE seq = ANY($1::bigint[])",
        [change["seq"] for change in changes],
    )
    return applied


async def enqueue_keys(
    reader: asyncpg.Connection, names: ObjectNames, table: str, ids: Iterable[uuid.UUID]
) -> None:
    """Have catch-up re-copy these keys (a chunk that verified unequal)."""
    await reader.execute(
        f"INSERT INTO {names.changes} (table_name, id) SELECT $1, unnest($2::uuid[])",
        table,
        list(ids),
    )


# ---------------------------------------------------------------- verify

_ROW_HASH = "md5(ROW({columns})::text)"
_DIGEST = "md5(string_agg(h, '' ORDER BY id))"


@dataclass(frozen=True)
class ChunkSum:
    upper: uuid.UUID | None
    rows: int
    digest: str | None


async def source_chunk_sum(
    connection: asyncpg.Connection, endpoint: Endpoint, table: str, after: uuid.UUID, rows: int
) -> ChunkSum:
    row_hash = _ROW_HASH.format(columns=_column_list(table))
    async with tenant_transaction(connection, endpoint):
        found = await connection.fetchrow(
            f"SELECT {_LAST_ID} AS upper, count(*) AS rows, {_DIGEST} AS digest "
            f"FROM (SELECT id, {row_hash} AS h FROM {table} WHERE {endpoint.tenant_filter} AND id > $1 "
            f"ORDER BY id LIMIT {int(rows)}) chunk",
            after,
        )
    assert found is not None
    return ChunkSum(found["upper"], found["rows"], found["digest"])


async def range_sum(
    connection: asyncpg.Connection, endpoint: Endpoint, table: str, after: uuid.UUID, upper: uuid.UUID | None
) -> ChunkSum:
    """The same sum over the key range (after, upper] (upper None: everything after)."""
    row_hash = _ROW_HASH.format(columns=_column_list(table))
    bound = "AND id <= $2" if upper is not None else ""
    args: list[Any] = [after] if upper is None else [after, upper]
    async with tenant_transaction(connection, endpoint):
        found = await connection.fetchrow(
            f"SELECT {_LAST_ID} AS upper, count(*) AS rows, {_DIGEST} AS digest "
            f"FROM (SELECT id, {row_hash} AS h FROM {table} WHERE {endpoint.tenant_filter} "
            f"AND id > $1 {bound}) chunk",
            *args,
        )
    assert found is not None
    return ChunkSum(found["upper"], found["rows"], found["digest"])


async def range_ids(
    connection: asyncpg.Connection, endpoint: Endpoint, table: str, after: uuid.UUID, upper: uuid.UUID | None
) -> set[uuid.UUID]:
    bound = "AND id <= $2" if upper is not None else ""
    args: list[Any] = [after] if upper is None else [after, upper]
    async with tenant_transaction(connection, endpoint):
        rows = await connection.fetch(
            f"SELECT id FROM {table} WHERE {endpoint.tenant_filter} AND id > $1 {bound}",
            *args,
        )
    return {row["id"] for row in rows}


@dataclass(frozen=True)
class Mismatch:
    table: str
    after: uuid.UUID
    upper: uuid.UUID | None


async def verify_table(
    source_conn: asyncpg.Connection,
    target_conn: asyncpg.Connection,
    source: Endpoint,
    target: Endpoint,
    table: str,
    chunk_rows: int,
    ranges: list[tuple[uuid.UUID, uuid.UUID | None]] | None = None,
) -> tuple[int, list[Mismatch]]:
    """Compare the table chunk by chunk (or only the given ranges); returns (chunks, mismatches).

    Both sides are summed at once, each on its own connection (and server): the same keyset chunk
    on each. Equal counts, digests and last keys mean the target holds exactly the source's rows of
    (after, upper]; otherwise the target's sum over the source's range says whether they differ."""
    mismatches: list[Mismatch] = []
    chunks = 0
    if ranges is not None:
        for after, upper in ranges:
            chunks += 1
            left, right = await asyncio.gather(
                range_sum(source_conn, source, table, after, upper),
                range_sum(target_conn, target, table, after, upper),
            )
            if (left.rows, left.digest) != (right.rows, right.digest):
                mismatches.append(Mismatch(table, after, upper))
        return chunks, mismatches
    after = ZERO_ID
    while True:
        left, right = await asyncio.gather(
            source_chunk_sum(source_conn, source, table, after, chunk_rows),
            source_chunk_sum(target_conn, target, table, after, chunk_rows),
        )
        chunks += 1
        # The last chunk reaches to the end of the key space: rows only the target has count too.
        upper = left.upper if left.rows == chunk_rows else None
        if (left.rows, left.digest, left.upper) != (right.rows, right.digest, right.upper):
            right = await range_sum(target_conn, target, table, after, upper)
            if (left.rows, left.digest) != (right.rows, right.digest):
                mismatches.append(Mismatch(table, after, upper))
        if upper is None:
            return chunks, mismatches
        after = upper


async def range_key_sums(
    connection: asyncpg.Connection, endpoint: Endpoint, table: str, after: uuid.UUID, upper: uuid.UUID | None
) -> dict[uuid.UUID, str]:
    """Each row's hash in the key range (after, upper]: which keys of a mismatched chunk differ."""
    row_hash = _ROW_HASH.format(columns=_column_list(table))
    bound = "AND id <= $2" if upper is not None else ""
    args: list[Any] = [after] if upper is None else [after, upper]
    async with tenant_transaction(connection, endpoint):
        rows = await connection.fetch(
            f"SELECT id, {row_hash} AS h FROM {table} WHERE {endpoint.tenant_filter} AND id > $1 {bound}",
            *args,
        )
    return {row["id"]: row["h"] for row in rows}


async def pending_keys(
    connection: asyncpg.Connection, names: ObjectNames, table: str, ids: Iterable[uuid.UUID]
) -> set[uuid.UUID]:
    """Which of these keys have a captured change not applied yet."""
    rows = await connection.fetch(
        f"SELECT DISTINCT id FROM {names.changes} WHERE table_name = $1 AND id = ANY($2::uuid[])",
        table,
        list(ids),
    )
    return {row["id"] for row in rows}


async def key_sums(
    connection: asyncpg.Connection, endpoint: Endpoint, table: str, ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, str]:
    row_hash = _ROW_HASH.format(columns=_column_list(table))
    async with tenant_transaction(connection, endpoint):
        rows = await connection.fetch(
            f"SELECT id, {row_hash} AS h FROM {table} WHERE {endpoint.tenant_filter} "
            "AND id = ANY($1::uuid[])",
            list(ids),
        )
    return {row["id"]: row["h"] for row in rows}


async def verify_keys(
    source_conn: asyncpg.Connection,
    target_conn: asyncpg.Connection,
    source: Endpoint,
    target: Endpoint,
    keys: Iterable[tuple[str, uuid.UUID]],
) -> list[tuple[str, uuid.UUID]]:
    """The keys whose rows differ (or exist on one side only)."""
    by_table: dict[str, set[uuid.UUID]] = defaultdict(set)
    for table, key in keys:
        by_table[table].add(key)
    differing: list[tuple[str, uuid.UUID]] = []
    for table, ids in by_table.items():
        left = await key_sums(source_conn, source, table, ids)
        right = await key_sums(target_conn, target, table, ids)
        differing += [(table, key) for key in ids if left.get(key) != right.get(key)]
    return differing


async def table_checksums(connection: asyncpg.Connection, endpoint: Endpoint) -> dict[str, tuple[int, str]]:
    """Every tenant table's (rows, digest) on one side: what tests and `verify` compare."""
    sums: dict[str, tuple[int, str]] = {}
    for table in TENANT_TABLES:
        found = await range_sum(connection, endpoint, table, ZERO_ID, None)
        sums[table] = (found.rows, found.digest or "")
    return sums


# ---------------------------------------------------------------- target preparation and cleanup


async def clear_tenant(writer: asyncpg.Connection, endpoint: Endpoint) -> None:
    """Remove every row of the tenant from a database (a target before its copy)."""
    async with tenant_transaction(writer, endpoint):
        if endpoint.variant == "dedicated":
            await writer.execute(f"TRUNCATE {', '.join(TENANT_TABLES)}")
        else:
            for table in TENANT_TABLES:
                await writer.execute(f"DELETE FROM {table} WHERE {endpoint.tenant_filter}")


async def delete_tenant_batch(
    writer: asyncpg.Connection, endpoint: Endpoint, rows: int, after: dict[str, uuid.UUID]
) -> int:
    """Delete the next `rows` of the tenant's rows per table, in key order after `after[table]`
    (advanced here), from the shared source (a moved tenant's leftovers), one short transaction per
    table: no long lock on anyone else's rows. A walk by key, not the first `rows` the index finds
    (those sit behind every entry deleted before and not yet vacuumed)."""
    deleted = 0
    for table in TENANT_TABLES:
        start = after.get(table, ZERO_ID)
        # The batch as a key range (after, upper]: its last key found first, then one range scan.
        # (`id IN (subquery)` with no statistics for the tenant yet: the planner expected one row
        # and ran the subquery again for each row it deleted.)
        upper: uuid.UUID | None = await writer.fetchval(
            f"SELECT {_LAST_ID} FROM (SELECT id FROM {table} WHERE {endpoint.tenant_filter} AND id > $1 "
            f"ORDER BY id LIMIT {int(rows)}) batch",
            start,
        )
        if upper is None:
            continue
        status: str = await writer.execute(
            f"DELETE FROM {table} WHERE {endpoint.tenant_filter} AND id > $1 AND id <= $2", start, upper
        )
        after[table] = upper
        deleted += int(status.split()[-1])
    return deleted


async def set_fence(owner_url: str, tenant_id: uuid.UUID, *, epoch: int, moved_to: str) -> None:
    """A fence that is only added when none is there (a target kept closed until its cutover)."""
    connection = await _connect(owner_url)
    try:
        await connection.execute(
            "INSERT INTO tenant_fences (tenant_id, epoch, moved_to) VALUES ($1, $2, $3) "
            "ON CONFLICT (tenant_id) DO NOTHING",
            tenant_id,
            epoch,
            moved_to,
        )
    finally:
        await connection.close()


async def drop_fence(owner_url: str, tenant_id: uuid.UUID, *, moved_to: str | None = None) -> None:
    connection = await _connect(owner_url)
    try:
        if moved_to is None:
            await connection.execute("DELETE FROM tenant_fences WHERE tenant_id = $1", tenant_id)
        else:
            await connection.execute(
                "DELETE FROM tenant_fences WHERE tenant_id = $1 AND moved_to = $2", tenant_id, moved_to
            )
    finally:
        await connection.close()


async def fence_of(owner_url: str, tenant_id: uuid.UUID) -> asyncpg.Record | None:
    connection = await _connect(owner_url)
    try:
        found: asyncpg.Record | None = await connection.fetchrow(
            "SELECT epoch, moved_to FROM tenant_fences WHERE tenant_id = $1", tenant_id
        )
        return found
    finally:
        await connection.close()


async def unsent_outbox_rows(connection: asyncpg.Connection, tenant_id: uuid.UUID) -> int:
    value: int = await connection.fetchval(
        "SELECT count(*) FROM outbox WHERE tenant_id = $1 AND state IN ('pending', 'in_flight')", tenant_id
    )
    return value
