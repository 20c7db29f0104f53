"""Create and drop a schema version of tenant tables inside an Alembic revision."""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op
from sqlalchemy import text

from tenantschema.declarations import TenantTableDecl
from tenantschema.render import Variant, post_create_ddl, render_metadata


def create_tenant_tables(decls: Sequence[TenantTableDecl], variant: Variant, app_role: str) -> None:
    bind = op.get_bind()
    metadata = render_metadata(decls, variant)
    for decl in decls:
        metadata.tables[decl.name].create(bind)
        for statement in post_create_ddl(decl, variant, app_role):
            bind.execute(text(statement))


def drop_tenant_tables(decls: Sequence[TenantTableDecl]) -> None:
    for decl in reversed(decls):
        # Partitions go with their parent; policies with their table.
        op.execute(f"DROP TABLE {decl.name}")
