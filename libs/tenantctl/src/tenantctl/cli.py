"""The `tenantctl` command: a typer app with one sub-app per area.

    tenantctl dlq list TOPIC [--json]
    tenantctl dlq replay TOPIC [--event-id ID] [--json]
    tenantctl migrate TENANT_ID [--to dedicated|shared] [--wait] [--json]
    tenantctl migrations list|show ID|cancel ID|cleanup ID|decisions [--json]
    tenantctl tenants list [--json]
    tenantctl placement plan [--tenant ID ...] [--changes] [--apply] [--json]

Further areas (`migrate`, `migrations ...`, `tenants list`, `placement plan`) are modules of this
package adding their own `typer.Typer()` here with `app.add_typer(...)`; shared pieces (settings,
`--json` output, error handling) live in `tenantctl.output` and `tenantctl.settings`.
"""

from __future__ import annotations

import logging

import typer

from tenantctl import dlq, migrations, placement

app = typer.Typer(
    name="tenantctl",
    add_completion=False,
    no_args_is_help=True,
    help="On-call CLI of the tenant platform. Settings come from the environment "
    "(KAFKA_BOOTSTRAP_SERVERS, ...), as for the services. Exit code 0 on success, 1 on failure.",
)
app.add_typer(dlq.app, name="dlq")
app.command("migrate")(migrations.migrate)
app.add_typer(migrations.migrations_app, name="migrations")
app.add_typer(migrations.tenants_app, name="tenants")
app.add_typer(placement.app, name="placement")


def main() -> None:
    # aiokafka logs every failed connection attempt; the command reports the failure once itself.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    app()
