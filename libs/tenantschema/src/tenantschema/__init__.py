"""Every schema of the platform, declared once.

- `declarations`: each tenant-owned table declared once, without `tenant_id`.
- `render`: turns a declaration into the shared variant (`tenant_id`, tenant-scoped constraints,
  hash partitions, Row Level Security) or the dedicated variant (no `tenant_id`, no RLS).
- `platform`: the platform database (tenants, plans, usage metrics, migrations) and the plan seed.
- `tables`: the rendered tables the application uses at run time.
- `migrations`: run the Alembic histories (`platform`, `shared`, `dedicated`) from code.
"""
