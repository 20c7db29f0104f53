"""The transactional outbox, in every database that holds state events come from (platform, shared,
each dedicated).

A use case inserts its events into `outbox` in the same transaction as the state change; a relay
publishes them after commit. The runtime role may only INSERT (on the shared database, only rows of
the tenant in context: RLS WITH CHECK). Relays claim and settle rows through SECURITY DEFINER
functions, so no service role can read other tenants' events:

- `outbox_claim(max_rows, lease_seconds)`: the next ready rows in `seq` order, marked in flight and
  counted (`send_count`). A row is ready when pending and due, or in flight past its lease (a relay
  died). A tenant whose earlier event is still in flight or backing off is skipped, so each tenant's
  events are published in order even with several relays.
- `outbox_published(seqs)`, `outbox_retry(seqs, error)`: settle a claim; a retry backs off
  exponentially (capped at 60 s) and is never dropped.
- `outbox_prune(keep)`: forget published rows older than `keep`.
"""

from __future__ import annotations

from tenantschema.render import CURRENT_TENANT_SQL, quote_ident

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
