"""tenantctl: the on-call engineer's CLI (CONTRACT.md §1). One typer app, one sub-app per area."""
