"""The migrator's bookkeeping on `tenant_migrations`: the reason a move was asked for, its progress
(rows copied per table and the last key copied, so a restarted copy resumes; catch-up lag; verify
results) and the number of cutover attempts (a drain that missed its deadline is retried).

`IF NOT EXISTS`: platform_0001 creates the tables from the current declarations
(tenantschema.platform), so a database built from base already has them; one at an earlier revision
gets them here.

Revision ID: platform_0006_migrator
Revises: platform_0005_usage
Create Date: 2026-12-01
"""

from collections.abc import Sequence

from alembic import op

revision: str = "platform_0006_migrator"
down_revision: str | None = "platform_0005_usage"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TABLE tenant_migrations ADD COLUMN IF NOT EXISTS reason text")
    op.execute(
        "ALTER TABLE tenant_migrations ADD COLUMN IF NOT EXISTS progress jsonb NOT NULL DEFAULT '{}'::jsonb"
    )
    op.execute(
        "ALTER TABLE tenant_migrations ADD COLUMN IF NOT EXISTS cutover_attempts integer NOT NULL DEFAULT 0"
    )


def downgrade() -> None:
    op.execute("ALTER TABLE tenant_migrations DROP COLUMN IF EXISTS cutover_attempts")
    op.execute("ALTER TABLE tenant_migrations DROP COLUMN IF EXISTS progress")
    op.execute("ALTER TABLE tenant_migrations DROP COLUMN IF EXISTS reason")
