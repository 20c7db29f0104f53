"""usage: exact per-tenant usage from the platform's events (requests, products, orders; storage
measured), kept in the platform database, and `tenant.threshold_crossed` exactly once per tenant,
metric and period."""
