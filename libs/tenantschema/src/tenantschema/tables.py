"""The tenant tables the application's SQL is written against, on either placement.

Repositories use these dedicated-shaped tables (no `tenant_id`) on both placements: on the shared
database `tenant_id` is filled by its default from the transaction's tenant context and filtered by
Row Level Security, so one statement serves both (see `render`).
"""

from sqlalchemy import Table

from tenantschema.declarations import CURRENT
from tenantschema.render import render_metadata

metadata = render_metadata(CURRENT, "dedicated")
shared_metadata = render_metadata(CURRENT, "shared")

product_categories: Table = metadata.tables["product_categories"]
products: Table = metadata.tables["products"]
customers: Table = metadata.tables["customers"]
orders: Table = metadata.tables["orders"]
processed_events: Table = metadata.tables["processed_events"]
order_products: Table = metadata.tables["order_products"]
sequences: Table = metadata.tables["sequences"]
idempotency_keys: Table = metadata.tables["idempotency_keys"]

TENANT_TABLES: tuple[str, ...] = tuple(decl.name for decl in CURRENT)
