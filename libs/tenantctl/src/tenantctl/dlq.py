"""`tenantctl dlq`: look at a topic's dead letters and put them back on the topic."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from tenantctl.output import Json, emit_json, fail, run, settings

if TYPE_CHECKING:
    from events.dlq import DeadLetterRecord

# events.dlq (aiokafka, FastStream, SQLAlchemy through events) is imported by the dlq commands only:
# it was ~80 % of every tenantctl command's start-up, the HTTP ones (migrate, placement) included.

app = typer.Typer(no_args_is_help=True, help="Dead-letter topics (<topic>.dlq): list and replay.")

Topic = Annotated[str, typer.Argument(help="The topic, e.g. catalog.products.v1 (or its .dlq twin).")]


def _line(record: DeadLetterRecord) -> str:
    d = record.as_dict()
    where = f"{d['original_topic']}[{d['original_partition']}]@{d['original_offset']}"
    error = " ".join((d["error"] or "-").split())[:200]  # one line per dead letter (--json has it all)
    return (
        f"{d['dead_lettered_at']}  {d['event_id'] or '-'}  {d['event_type'] or '-'}  "
        f"tenant={d['tenant_id'] or '-'}  from={where}  error={error}"
    )


@app.command("list")
def list_(topic: Topic, as_json: Json = False) -> None:
    """Every dead letter of TOPIC: event id, type, tenant, error, original partition/offset, when."""
    from events.dlq import dlq_topic, read_dead_letters

    bootstrap = settings().kafka_bootstrap_servers
    records = run(read_dead_letters(bootstrap, topic))
    if as_json:
        emit_json({"topic": dlq_topic(topic), "count": len(records), "items": [r.as_dict() for r in records]})
        return
    for record in records:
        typer.echo(_line(record))
    typer.echo(f"{len(records)} dead letter(s) in {dlq_topic(topic)}")


@app.command("replay")
def replay_(
    topic: Topic,
    event_id: Annotated[
        str | None, typer.Option("--event-id", help="Only the dead letters of this event id.")
    ] = None,
    as_json: Json = False,
) -> None:
    """Put TOPIC's dead letters back on their original topic (consumers skip what they already
    applied, so replaying twice is harmless). Fails when --event-id matches none."""
    from events.dlq import dlq_topic, replay

    bootstrap = settings().kafka_bootstrap_servers
    replayed = run(replay(bootstrap, topic, event_id=event_id))
    if event_id is not None and not replayed:
        fail(f"no dead letter with event id {event_id} in {dlq_topic(topic)}")
    if as_json:
        emit_json(
            {
                "topic": dlq_topic(topic),
                "replayed": len(replayed),
                "items": [r.as_dict() for r in replayed],
            }
        )
        return
    for record in replayed:
        typer.echo(f"replayed {_line(record)}")
    typer.echo(f"replayed {len(replayed)} dead letter(s) from {dlq_topic(topic)}")
