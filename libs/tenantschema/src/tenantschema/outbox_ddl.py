"""The transactional outbox, in every database that holds state events come from (platform, shared,
each dedicated).

A use case inserts its events into `outbox` in the same transaction as the state change; a relay
publishes them after commit. The runtime role may only INSERT (on the shared database, only rows of
the tenant in context: RLS WITH CHECK). Relays claim and settle rows through SECURITY DEFINER
functions that only the relay's own role (`RELAY_ROLE`) may execute, so no service role can read
other tenants' events.

`create_outbox()` is what the first revisions ran (table, indexes, a first claim protocol) and stays
as it was. `create_relay_protocol()` (revisions platform_0003_relay, shared_0004_relay,
dedicated_0004_relay) replaces that protocol with partition leases:

- `outbox_claim(relay, max_rows, lease_seconds)`: takes the leases of partitions with rows waiting
  (at most a fair share among the relays at work) and returns their ready rows in `seq` order, each
  with its lease token;
- `outbox_settle(relay, tokens, published, retry, retry_error, failed, failed_errors)`: settles what
  a claim returned, only under leases still held with those tokens; a retry backs off exponentially
  (capped at 60 s) and is never dropped; `failed` is for events Kafka can never accept;
- `outbox_backlog()`: counts for the relay's metrics; `outbox_prune(keep)`: forgets published rows;
- platform only: `outbox_sweep_due(n, min_interval)`, the leftover round over dedicated databases.

libs/events/README.md describes the protocol and why per-tenant order holds.
"""

from __future__ import annotations

from tenantschema.render import CURRENT_TENANT_SQL, quote_ident
from tenantschema.roles import RELAY_ROLE

STATES = ("pending", "in_flight", "published", "failed")


def create_outbox(app_role: str, *, tenant_scoped_rls: bool) -> list[str]:
    role = quote_ident(app_role)
    ddl = [
        f"""CREATE TABLE outbox (
               seq bigserial PRIMARY KEY,
               event_id uuid NOT NULL UNIQUE,
               tenant_id uuid NOT NULL,
               topic text NOT NULL,
               event_type text NOT NULL,
               payload jsonb NOT NULL,
               state text NOT NULL DEFAULT 'pending'
                   CHECK (state IN ({", ".join(repr(s) for s in STATES)})),
               send_count integer NOT NULL DEFAULT 0,
               next_attempt_at timestamptz NOT NULL DEFAULT now(),
               claimed_at timestamptz,
               published_at timestamptz,
               last_error text,
               created_at timestamptz NOT NULL DEFAULT now()
           )""",
        "CREATE INDEX idx_outbox_unpublished ON outbox (seq) WHERE state <> 'published'",
        "CREATE INDEX idx_outbox_tenant_unpublished ON outbox (tenant_id, seq) WHERE state <> 'published'",
        "REVOKE ALL ON outbox FROM PUBLIC",
        f"GRANT INSERT ON outbox TO {role}",
        f"GRANT USAGE ON SEQUENCE outbox_seq_seq TO {role}",
        """CREATE FUNCTION outbox_claim(max_rows integer, lease_seconds integer) RETURNS SETOF outbox
               LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp
               AS $$
               WITH ready AS (
                   SELECT o.seq FROM outbox o
                   WHERE o.state <> 'published'
                     AND ((o.state = 'pending' AND o.next_attempt_at <= now())
                          OR (o.state = 'in_flight'
                              AND o.claimed_at < now() - make_interval(secs => lease_seconds)))
                     AND NOT EXISTS (
                         SELECT 1 FROM outbox e
                         WHERE e.tenant_id = o.tenant_id AND e.seq < o.seq AND e.state <> 'published'
                           AND ((e.state = 'in_flight'
                                 AND e.claimed_at >= now() - make_interval(secs => lease_seconds))
                                OR (e.state = 'pending' AND e.next_attempt_at > now())))
                   ORDER BY o.seq
                   LIMIT max_rows
                   FOR UPDATE SKIP LOCKED
               )
               UPDATE outbox SET state = 'in_flight', claimed_at = now(), send_count = send_count + 1
               FROM ready WHERE outbox.seq = ready.seq
               RETURNING outbox.*
               $$""",
        """CREATE FUNCTION outbox_published(seqs bigint[]) RETURNS integer
               LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp
               AS $$
               WITH done AS (
                   UPDATE outbox SET state = 'published', published_at = now(), last_error = NULL
                   WHERE seq = ANY(seqs) RETURNING 1)
               SELECT count(*)::integer FROM done
               $$""",
        """CREATE FUNCTION outbox_retry(seqs bigint[], error text) RETURNS integer
               LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp
               AS $$
               WITH again AS (
                   UPDATE outbox SET state = 'pending', last_error = left(error, 2000), claimed_at = NULL,
                          next_attempt_at = now() + make_interval(
                              secs => least(60, 0.2 * power(2, least(send_count, 10))))
                   WHERE seq = ANY(seqs) AND state = 'in_flight' RETURNING 1)
               SELECT count(*)::integer FROM again
               $$""",
        """CREATE FUNCTION outbox_prune(keep interval) RETURNS integer
               LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp
               AS $$
               WITH gone AS (
                   DELETE FROM outbox WHERE state = 'published' AND published_at < now() - keep RETURNING 1)
               SELECT count(*)::integer FROM gone
               $$""",
    ]
    for function in (
        "outbox_claim(integer, integer)",
        "outbox_published(bigint[])",
        "outbox_retry(bigint[], text)",
        "outbox_prune(interval)",
    ):
        ddl.append(f"REVOKE ALL ON FUNCTION {function} FROM PUBLIC")
        ddl.append(f"GRANT EXECUTE ON FUNCTION {function} TO {role}")
    if tenant_scoped_rls:
        # Not FORCEd: the functions above run as the owner and see every tenant's rows; the runtime
        # role only inserts, and only for the tenant in its transaction's context.
        predicate = f"tenant_id = (SELECT {CURRENT_TENANT_SQL})"
        ddl += [
            "ALTER TABLE outbox ENABLE ROW LEVEL SECURITY",
            f"CREATE POLICY outbox_insert_own_tenant ON outbox FOR INSERT WITH CHECK ({predicate})",
        ]
    return ddl


def drop_outbox() -> list[str]:
    return [
        "DROP FUNCTION outbox_prune(interval)",
        "DROP FUNCTION outbox_retry(bigint[], text)",
        "DROP FUNCTION outbox_published(bigint[])",
        "DROP FUNCTION outbox_claim(integer, integer)",
        "DROP TABLE outbox",
    ]


def create_inbox(app_role: str) -> list[str]:
    """Consumers' processed event ids, for the platform database (tenant databases declare theirs)."""
    role = quote_ident(app_role)
    return [
        """CREATE TABLE inbox (
               consumer text NOT NULL,
               event_id uuid NOT NULL,
               processed_at timestamptz NOT NULL DEFAULT now(),
               PRIMARY KEY (consumer, event_id)
           )""",
        f"GRANT SELECT, INSERT, DELETE ON inbox TO {role}",
    ]


# ------------------------------------------------------------------------------------------------------
# The relay protocol (revisions platform_0003_relay, shared_0004_relay, dedicated_0004_relay). What
# create_outbox() renders above stays as it was: the revisions that ran it are applied history.

# Rows are divided into this many partitions by a hash of the tenant id; a relay drains a partition only
# while it holds its lease, so one tenant's rows are only ever sent by one relay at a time.
RELAY_PARTITIONS = 16

_LEGACY_FUNCTIONS = (
    "outbox_claim(integer, integer)",
    "outbox_published(bigint[])",
    "outbox_retry(bigint[], text)",
)
_RELAY_FUNCTIONS = (
    "outbox_claim(text, integer, integer, boolean)",
    "outbox_settle(text, bigint[], bigint[], bigint[], text, bigint[], text[])",
    "outbox_backlog()",
    "outbox_prune(interval)",
)


def _require_relay_role() -> str:
    return f"""DO $$
           BEGIN
               IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{RELAY_ROLE}') THEN
                   RAISE EXCEPTION 'role {RELAY_ROLE} does not exist: create it first (devstack does)';
               END IF;
               EXECUTE format('GRANT CONNECT ON DATABASE %I TO {RELAY_ROLE}', current_database());
           END $$"""  # noqa: S608  (a constant role name, no input)


def create_relay_protocol(app_role: str) -> list[str]:
    """Partition leases, the lease-checked claim and settle functions, only the relay's role may call
    them (libs/events/README.md describes the protocol)."""
    role = quote_ident(app_role)
    relay = quote_ident(RELAY_ROLE)
    ddl = [
        _require_relay_role(),
        f"GRANT USAGE ON SCHEMA public TO {relay}",
        *(f"DROP FUNCTION {function}" for function in _LEGACY_FUNCTIONS),
        f"""ALTER TABLE outbox
               ADD COLUMN relay_partition smallint NOT NULL GENERATED ALWAYS AS
                   (((uuid_hash(tenant_id) & 2147483647) % {RELAY_PARTITIONS})::smallint) STORED""",
        "CREATE INDEX idx_outbox_partition_unsent ON outbox (relay_partition, seq) "
        "WHERE state IN ('pending', 'in_flight')",
        # Rows sent back to pending after a failed send: few, and the only ones that can hold a tenant's
        # later rows back (the claim looks them up here instead of per row).
        "CREATE INDEX idx_outbox_backing_off ON outbox (relay_partition, tenant_id, seq) "
        "WHERE state = 'pending' AND send_count > 0",
        # The legacy claim's per-row lookup; every index costs each settle an insert.
        "DROP INDEX idx_outbox_tenant_unpublished",
        """CREATE TABLE outbox_leases (
               relay_partition smallint PRIMARY KEY,
               holder text,
               token bigint NOT NULL DEFAULT 0,
               expires_at timestamptz NOT NULL DEFAULT '-infinity'
           )""",
        f"INSERT INTO outbox_leases (relay_partition) SELECT generate_series(0, {RELAY_PARTITIONS - 1})",
        "CREATE SEQUENCE outbox_lease_token",
        """CREATE TABLE outbox_relays (
               relay text PRIMARY KEY,
               seen_at timestamptz NOT NULL
           )""",
        "REVOKE ALL ON outbox_leases, outbox_relays, outbox_lease_token FROM PUBLIC",
        # One relay per partition at a time: leases are taken (free, expired, or already ours) with
        # SKIP LOCKED, at most a fair share (partitions / relays seen in the last seconds) so N relays
        # split the work, only where rows wait, and given back as soon as a claim finds nothing ready
        # there. A lease taken anew gets a new token; the claim returns each row with its partition's
        # token and settling checks it, so a relay whose lease lapsed settles nothing. Claiming writes
        # no row: the lease is what makes a row "in flight" (the caller settles a claim before it
        # claims again), and rows a relay claimed but could not settle are simply claimed again by
        # whoever holds the partition next (at least once; consumers deduplicate by event id).
        """CREATE FUNCTION outbox_claim(
                   relay text, max_rows integer, lease_seconds integer, release_idle boolean)
               RETURNS TABLE (
                   seq bigint, event_id uuid, tenant_id uuid, topic text, payload text, lease_token bigint)
               LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
               AS $$
               #variable_conflict use_column
               DECLARE
                   lease interval := make_interval(secs => lease_seconds);
                   members integer;
                   share integer;
                   held smallint[];
                   renew boolean;
               BEGIN
                   INSERT INTO outbox_relays AS r (relay, seen_at) VALUES (outbox_claim.relay, now())
                       ON CONFLICT (relay) DO UPDATE SET seen_at = now()
                       WHERE r.seen_at < now() - interval '1 second';
                   DELETE FROM outbox_relays r WHERE r.seen_at < now() - interval '1 minute';
                   -- A relay polls the sources it drains at least every few seconds; one gone quiet for
                   -- longer no longer counts (its partitions' leases lapse or are given back anyway).
                   SELECT count(*) INTO members FROM outbox_relays r
                   WHERE r.seen_at > now() - least(lease, interval '5 seconds');
                   share := ceil((SELECT count(*) FROM outbox_leases)::numeric / greatest(members, 1));

                   -- Most claims change no lease: the caller holds its share, renewed recently, and no
                   -- free partition has work. Those only read (no row lock, no commit to flush).
                   SELECT coalesce(array_agg(l.relay_partition), '{}'),
                          coalesce(bool_or(l.expires_at < now() + lease / 2), false)
                   INTO held, renew
                   FROM outbox_leases l WHERE l.holder = outbox_claim.relay AND l.expires_at > now();
                   IF renew OR cardinality(held) > share OR (cardinality(held) < share AND EXISTS (
                       SELECT 1 FROM outbox_leases l
                       WHERE (l.holder IS NULL OR l.expires_at <= now())
                         AND EXISTS (SELECT 1 FROM outbox o WHERE o.relay_partition = l.relay_partition
                                                              AND o.state IN ('pending', 'in_flight'))))
                   THEN
                       WITH wanted AS (
                           SELECT l.relay_partition FROM outbox_leases l
                           WHERE (l.holder = outbox_claim.relay AND l.expires_at > now())
                              OR ((l.holder IS NULL OR l.expires_at <= now())
                                  AND EXISTS (SELECT 1 FROM outbox o
                                              WHERE o.relay_partition = l.relay_partition
                                                AND o.state IN ('pending', 'in_flight')))
                           ORDER BY (l.holder IS NOT DISTINCT FROM outbox_claim.relay
                                     AND l.expires_at > now()) DESC, random()
                           LIMIT share
                           FOR UPDATE SKIP LOCKED
                       ), taken AS (
                           UPDATE outbox_leases l
                           SET token = CASE WHEN l.holder = outbox_claim.relay AND l.expires_at > now()
                                            THEN l.token ELSE nextval('outbox_lease_token') END,
                               holder = outbox_claim.relay,
                               expires_at = now() + lease
                           FROM wanted WHERE l.relay_partition = wanted.relay_partition
                           RETURNING l.relay_partition
                       )
                       SELECT coalesce(array_agg(taken.relay_partition), '{}') INTO held FROM taken;
                       -- Beyond the fair share, or expired: given back.
                       UPDATE outbox_leases l SET holder = NULL, expires_at = '-infinity'
                       WHERE l.holder = outbox_claim.relay AND NOT (l.relay_partition = ANY (held));
                   END IF;

                   -- A new statement, a new snapshot: it sees every row committed before the leases
                   -- were taken. A tenant's rows behind one that backs off wait for it (order); rows
                   -- settled failed hold nothing back.
                   RETURN QUERY
                   WITH blocked AS (
                       SELECT b.tenant_id, min(b.seq) AS from_seq FROM outbox b
                       WHERE b.relay_partition = ANY (held) AND b.state = 'pending' AND b.send_count > 0
                         AND b.next_attempt_at > now()
                       GROUP BY b.tenant_id
                   )
                   SELECT o.seq, o.event_id, o.tenant_id, o.topic, o.payload::text, l.token
                   FROM outbox o
                   JOIN outbox_leases l ON l.relay_partition = o.relay_partition
                   LEFT JOIN blocked ON blocked.tenant_id = o.tenant_id
                   WHERE o.relay_partition = ANY (held) AND o.state IN ('pending', 'in_flight')
                     AND (o.state = 'in_flight' OR o.next_attempt_at <= now())
                     AND (blocked.from_seq IS NULL OR o.seq < blocked.from_seq)
                   ORDER BY o.seq
                   LIMIT max_rows;

                   -- Nothing ready in a partition of a database the caller does not poll (a dedicated
                   -- one, drained when a commit names it): give it back now, so whichever relay is
                   -- woken next for it can take it without waiting for the lease. A polled database's
                   -- leases stay with their live holder, which looks again in a few milliseconds.
                   UPDATE outbox_leases l SET holder = NULL, expires_at = '-infinity'
                   WHERE release_idle AND l.holder = outbox_claim.relay AND l.relay_partition = ANY (held)
                     AND NOT EXISTS (SELECT 1 FROM outbox o
                                     WHERE o.relay_partition = l.relay_partition
                                       AND o.state IN ('pending', 'in_flight')
                                       AND (o.state = 'in_flight' OR o.next_attempt_at <= now()));
               END
               $$""",
        # Settles what a claim returned: only unsettled rows of partitions whose lease the caller still
        # holds under one of the tokens its claim returned (share-locked first, so none is taken over
        # until this commits).
        """CREATE FUNCTION outbox_settle(
                   relay text, tokens bigint[], published bigint[], retry bigint[], retry_error text,
                   failed bigint[], failed_errors text[]) RETURNS integer
               LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
               AS $$
               #variable_conflict use_column
               DECLARE
                   live smallint[];
                   settled integer := 0;
                   n integer;
               BEGIN
                   SELECT coalesce(array_agg(l.relay_partition), '{}') INTO live FROM (
                       SELECT l.relay_partition FROM outbox_leases l
                       WHERE l.holder = outbox_settle.relay AND l.token = ANY (tokens)
                         AND l.expires_at > now()
                       ORDER BY l.relay_partition FOR SHARE) l;
                   UPDATE outbox o
                   SET state = 'published', published_at = now(), send_count = o.send_count + 1,
                       last_error = NULL
                   WHERE o.seq = ANY (published) AND o.relay_partition = ANY (live)
                     AND o.state IN ('pending', 'in_flight');
                   GET DIAGNOSTICS n = ROW_COUNT;
                   settled := settled + n;
                   UPDATE outbox o
                   SET state = 'pending', send_count = o.send_count + 1, last_error = left(retry_error, 2000),
                       claimed_at = NULL,
                       next_attempt_at = now() + make_interval(
                           secs => least(60, 0.2 * power(2, least(o.send_count, 10))))
                   WHERE o.seq = ANY (retry) AND o.relay_partition = ANY (live)
                     AND o.state IN ('pending', 'in_flight');
                   GET DIAGNOSTICS n = ROW_COUNT;
                   settled := settled + n;
                   UPDATE outbox o
                   SET state = 'failed', send_count = o.send_count + 1, last_error = left(f.error, 2000),
                       claimed_at = NULL
                   FROM unnest(failed, failed_errors) AS f(seq, error)
                   WHERE o.seq = f.seq AND o.relay_partition = ANY (live)
                     AND o.state IN ('pending', 'in_flight');
                   GET DIAGNOSTICS n = ROW_COUNT;
                   RETURN settled + n;
               END
               $$""",
        # For the relay's metrics: no payloads, no tenant ids.
        """CREATE FUNCTION outbox_backlog()
               RETURNS TABLE (unsent bigint, oldest_unsent timestamptz, failed bigint)
               LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
               AS $$
               SELECT count(*) FILTER (WHERE state IN ('pending', 'in_flight')),
                      min(created_at) FILTER (WHERE state IN ('pending', 'in_flight')),
                      count(*) FILTER (WHERE state = 'failed')
               FROM outbox WHERE state <> 'published'
               $$""",
        f"REVOKE ALL ON FUNCTION outbox_prune(interval) FROM {role}",
    ]
    for function in _RELAY_FUNCTIONS:
        ddl.append(f"REVOKE ALL ON FUNCTION {function} FROM PUBLIC")
        ddl.append(f"GRANT EXECUTE ON FUNCTION {function} TO {relay}")
    return ddl


def drop_relay_protocol(app_role: str) -> list[str]:
    """Back to what create_outbox() made: the legacy functions, executable by the runtime role."""
    role = quote_ident(app_role)
    relay = quote_ident(RELAY_ROLE)
    legacy = [
        statement
        for statement in create_outbox(app_role, tenant_scoped_rls=False)
        if statement.lstrip().startswith("CREATE FUNCTION outbox_")
        and "outbox_prune" not in statement.split("(")[0]
    ]
    ddl = [
        f"REVOKE ALL ON FUNCTION outbox_prune(interval) FROM {relay}",
        f"GRANT EXECUTE ON FUNCTION outbox_prune(interval) TO {role}",
        "DROP FUNCTION outbox_backlog()",
        "DROP FUNCTION outbox_settle(text, bigint[], bigint[], bigint[], text, bigint[], text[])",
        "DROP FUNCTION outbox_claim(text, integer, integer, boolean)",
        "DROP TABLE outbox_relays",
        "DROP SEQUENCE outbox_lease_token",
        "DROP TABLE outbox_leases",
        "DROP INDEX idx_outbox_backing_off",
        "DROP INDEX idx_outbox_partition_unsent",
        "CREATE INDEX idx_outbox_tenant_unpublished ON outbox (tenant_id, seq) WHERE state <> 'published'",
        "ALTER TABLE outbox DROP COLUMN relay_partition",
        *legacy,
    ]
    for function in _LEGACY_FUNCTIONS:
        ddl.append(f"REVOKE ALL ON FUNCTION {function} FROM PUBLIC")
        ddl.append(f"GRANT EXECUTE ON FUNCTION {function} TO {role}")
    ddl.append(f"REVOKE USAGE ON SCHEMA public FROM {relay}")
    return ddl


def create_sweep_registry() -> list[str]:
    """Platform database: which dedicated databases a relay swept for leftovers, and when.

    `outbox_sweep_due(n, min_interval)` hands out up to n databases nobody swept for min_interval
    seconds and stamps them, so N relays together visit each idle dedicated database about once per
    interval instead of N times per second. Candidates are every `tenant_<32 hex>` database on this
    server (rows left behind after a tenant moved away are delivered too) and every dedicated database
    the directory names (which may live on another server)."""
    relay = quote_ident(RELAY_ROLE)
    return [
        _require_relay_role(),
        f"GRANT USAGE ON SCHEMA public TO {relay}",
        """CREATE TABLE outbox_sweeps (
               database_name text PRIMARY KEY,
               swept_at timestamptz NOT NULL
           )""",
        "REVOKE ALL ON outbox_sweeps FROM PUBLIC",
        """CREATE FUNCTION outbox_sweep_due(max_databases integer, min_interval_seconds double precision)
               RETURNS SETOF text
               LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp
               AS $$
               WITH candidates AS (
                   SELECT d.datname::text AS database_name FROM pg_database d
                   WHERE d.datname ~ '^tenant_[0-9a-f]{32}$' AND d.datallowconn
                   UNION
                   SELECT t.database_name FROM tenants t
                   WHERE t.tenant_type = 'dedicated' AND t.database_name IS NOT NULL AND t.status <> 'deleted'
               ), due AS (
                   SELECT c.database_name FROM candidates c
                   LEFT JOIN outbox_sweeps s ON s.database_name = c.database_name
                   WHERE s.swept_at IS NULL
                      OR s.swept_at < now() - make_interval(secs => min_interval_seconds)
                   ORDER BY s.swept_at NULLS FIRST
                   LIMIT max_databases
               )
               INSERT INTO outbox_sweeps AS s (database_name, swept_at)
               SELECT due.database_name, now() FROM due
               ON CONFLICT (database_name) DO UPDATE SET swept_at = now()
                   WHERE s.swept_at < now() - make_interval(secs => min_interval_seconds)
               RETURNING s.database_name
               $$""",
        "REVOKE ALL ON FUNCTION outbox_sweep_due(integer, double precision) FROM PUBLIC",
        f"GRANT EXECUTE ON FUNCTION outbox_sweep_due(integer, double precision) TO {relay}",
    ]


def drop_sweep_registry() -> list[str]:
    return [
        "DROP FUNCTION outbox_sweep_due(integer, double precision)",
        "DROP TABLE outbox_sweeps",
    ]
