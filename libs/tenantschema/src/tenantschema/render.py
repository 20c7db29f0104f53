"""Render tenant table declarations into the shared or the dedicated variant.

Shared variant rules (the dedicated variant is the declaration as written, without RLS):
- a leading `tenant_id uuid NOT NULL` whose default is the transaction's tenant context, so the same
  INSERT statement works on both placements; with no context the default is NULL and the insert fails;
- unique constraints and indexes lead with `tenant_id` (tenant-scoped, and usable under RLS);
- references between tenant tables are composite `(tenant_id, col) -> (tenant_id, id)`;
- Row Level Security ENABLED and FORCED with one policy for USING and WITH CHECK that reads
  `app.current_tenant_id` once per statement (an InitPlan), treating '' (what a reset transaction-local
  setting reads as) as no tenant: no context means no row visible and no row writable;
- `shared_partitions` > 0: the table is hash-partitioned by `tenant_id` (the primary key then includes it).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal

from sqlalchemy import (
    Column,
    ForeignKeyConstraint,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.schema import SchemaItem

from tenantschema.declarations import IndexDecl, TenantTableDecl

# Re-exported: revisions, provisioning and tests import it from here.
from tenantschema.roles import quote_ident as quote_ident

Variant = Literal["shared", "dedicated"]

TENANT_SETTING = "app.current_tenant_id"
# '' is what current_setting(..., true) returns once a transaction-local value was reset.
CURRENT_TENANT_SQL = f"NULLIF(current_setting('{TENANT_SETTING}', true), '')::uuid"


def _referenced(decls: Iterable[TenantTableDecl]) -> set[str]:
    return {ref.table for decl in decls for ref in decl.references}


def render_table(decl: TenantTableDecl, variant: Variant, metadata: MetaData, *, referenced: bool) -> Table:
    """One declaration as a SQLAlchemy table of the given variant."""
    columns = decl.columns()
    constraints: list[SchemaItem] = []
    shared = variant == "shared"
    if shared:
        tenant_id: Column[Any] = Column(
            "tenant_id", UUID(as_uuid=True), nullable=False, server_default=text(CURRENT_TENANT_SQL)
        )
        columns = [tenant_id, *columns]
        pk_columns = ["tenant_id", "id"] if decl.shared_partitions else ["id"]
        for column in columns:
            column.primary_key = False
        constraints.append(PrimaryKeyConstraint(*pk_columns, name=f"{decl.name}_pkey"))
        if referenced and not decl.shared_partitions:
            constraints.append(UniqueConstraint("tenant_id", "id", name=f"{decl.name}_tenant_id_id_key"))
    scope = ["tenant_id"] if shared else []
    for unique in decl.unique:
        cols = [*scope, *unique]
        constraints.append(UniqueConstraint(*cols, name=f"{decl.name}_{'_'.join(cols)}_key"))
    for ref in decl.references:
        constraints.append(
            ForeignKeyConstraint(
                [*scope, ref.column],
                [f"{ref.table}.{c}" for c in [*scope, "id"]],
                name=f"{decl.name}_{ref.column}_fkey",
                ondelete=ref.on_delete,
            )
        )
    partition_by = "HASH (tenant_id)" if shared and decl.shared_partitions else None
    return Table(decl.name, metadata, *columns, *constraints, postgresql_partition_by=partition_by)


def render_metadata(decls: Sequence[TenantTableDecl], variant: Variant) -> MetaData:
    """All declarations of a schema version as tables of one variant."""
    metadata = MetaData()
    referenced = _referenced(decls)
    for decl in decls:
        render_table(decl, variant, metadata, referenced=decl.name in referenced)
    return metadata


def partition_names(decl: TenantTableDecl) -> list[str]:
    return [f"{decl.name}_part_{i}" for i in range(decl.shared_partitions)]


def _index_ddl(decl: TenantTableDecl, index: IndexDecl, variant: Variant) -> str:
    scoped = variant == "shared" and index.tenant_scoped
    name = f"idx_{decl.short}_tenant_{index.name}" if scoped else f"idx_{decl.short}_{index.name}"
    expressions = ["tenant_id", *index.expressions] if scoped else list(index.expressions)
    where = f" WHERE {index.where}" if index.where else ""
    return f"CREATE INDEX {name} ON {decl.name} USING {index.using} ({', '.join(expressions)}){where}"


def _policy_ddl(table: str) -> list[str]:
    predicate = f"tenant_id = (SELECT {CURRENT_TENANT_SQL})"
    return [
        f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY",
        f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY",
        f"CREATE POLICY {table}_tenant_isolation ON {table} FOR ALL "
        f"USING ({predicate}) WITH CHECK ({predicate})",
    ]


def post_create_ddl(decl: TenantTableDecl, variant: Variant, app_role: str) -> list[str]:
    """Partitions, indexes, RLS and grants of one table, to run after CREATE TABLE."""
    ddl: list[str] = []
    shared = variant == "shared"
    if shared:
        for i, part in enumerate(partition_names(decl)):
            ddl.append(
                f"CREATE TABLE {part} PARTITION OF {decl.name} "
                f"FOR VALUES WITH (MODULUS {decl.shared_partitions}, REMAINDER {i})"
            )
    indexes = [*decl.indexes, *(decl.shared_only_indexes if shared else ())]
    ddl.extend(_index_ddl(decl, index, variant) for index in indexes)
    if shared:
        for table in [decl.name, *partition_names(decl)]:
            ddl.extend(_policy_ddl(table))
    # Partitions get no grant: the runtime role reaches rows only through the parent.
    ddl.append(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {decl.name} TO {quote_ident(app_role)}")
    return ddl
