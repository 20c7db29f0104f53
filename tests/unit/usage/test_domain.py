"""usage's rules without servers: parsing (what is dead-lettered), attribution by the event's own UTC
day, aggregation per key in key order, level and monthly thresholds."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from events.failures import InvalidEvent
from events.thresholds import Triggers
from hypothesis import given, settings
from hypothesis import strategies as st
from usage import domain
from usage.domain import LevelState, LevelTracker, PlanLimits


def _raw(event_type: str, data: dict[str, Any], **extra: Any) -> bytes:
    body = {
        "event_id": str(uuid.uuid4()),
        "event_type": event_type,
        "tenant_id": str(uuid.uuid4()),
        "occurred_at": "2026-11-30T23:59:59.999999+00:00",
        "schema_version": 1,
        "producer": "test",
        "data": data,
    } | extra
    return json.dumps(body).encode()


def _window(start: str, count: int = 3) -> dict[str, Any]:
    return {"service": "catalog", "count": count, "window_start": start, "window_end": start}


def test_a_request_window_counts_on_the_utc_day_it_started() -> None:
    parsed = domain.parse(_raw("api.requests_counted", _window("2026-12-01T01:30:00+02:00", 7)))
    assert parsed is not None
    assert parsed.day == date(2026, 11, 30)
    assert parsed.requests == 7
    assert parsed.event_id == parsed.event_id.lower()


def test_other_events_count_on_their_occurred_at_day_and_unknown_types_are_ignored() -> None:
    parsed = domain.parse(_raw("order.placed", {}))
    assert parsed is not None
    assert parsed.day == date(2026, 11, 30)
    assert domain.parse(_raw("order.status_changed", {})) is None
    plan = domain.parse(_raw("tenant.plan_changed", {"old_plan": "basic", "new_plan": "enterprise"}))
    assert plan is not None
    assert plan.plan == "enterprise"


def test_a_numbered_request_count_carries_its_counter_and_sequence() -> None:
    counter = uuid.uuid4()
    window = _window("2026-12-01T00:00:00+00:00") | {"counter_id": str(counter).upper(), "sequence": 42}
    parsed = domain.parse(_raw("api.requests_counted", window))
    assert parsed is not None
    assert (parsed.counter, parsed.sequence) == (str(counter), 42)
    unnumbered = domain.parse(_raw("api.requests_counted", _window("2026-12-01T00:00:00+00:00")))
    assert unnumbered is not None
    assert (unnumbered.counter, unnumbered.sequence) == (None, None)


_NUMBERED = _window("2026-12-01T00:00:00+00:00") | {"counter_id": str(uuid.uuid4()), "sequence": 1}


@pytest.mark.parametrize(
    ("value", "field"),
    [
        (_raw("api.requests_counted", _NUMBERED | {"sequence": 0}), "data.sequence"),
        (_raw("api.requests_counted", _NUMBERED | {"sequence": "1"}), "data.sequence"),
        (_raw("api.requests_counted", _NUMBERED | {"sequence": None}), "data.sequence"),
        (_raw("api.requests_counted", _NUMBERED | {"counter_id": "c"}), "data.counter_id"),
        (b"", "empty"),
        (b"{nope", "JSON"),
        (b"[1]", "object"),
        (_raw("api.requests_counted", _window("2026-12-01T00:00:00+00:00"), event_id="x"), "event_id"),
        (_raw("api.requests_counted", _window("2026-12-01T00:00:00+00:00"), tenant_id=None), "tenant_id"),
        (_raw("api.requests_counted", _window("2026-12-01T00:00:00+00:00", -1)), "data.count"),
        (_raw("api.requests_counted", _window("2026-12-01T00:00:00+00:00") | {"count": True}), "data.count"),
        (_raw("api.requests_counted", _window("2026-12-01T00:00:00")), "data.window_start"),
        (_raw("api.requests_counted", "not an object"), "data"),  # type: ignore[arg-type]
        (_raw("order.placed", {}, occurred_at="yesterday"), "occurred_at"),
    ],
)
def test_what_cannot_be_counted_is_refused_naming_the_field(value: bytes, field: str) -> None:
    with pytest.raises(InvalidEvent, match=field):
        domain.parse(value)


def test_a_batch_is_one_entry_per_key_in_key_order() -> None:
    a, b = sorted([uuid.uuid4(), uuid.uuid4()], key=str)
    day = date(2026, 12, 1)
    events = [
        domain.Counted("1", "api.requests_counted", b, day, requests=5),
        domain.Counted("2", "api.requests_counted", a, day, requests=2),
        domain.Counted("3", "api.requests_counted", b, day, requests=1),
        domain.Counted("4", "product.created", b, date(2026, 11, 30)),
        domain.Counted("5", "product.deleted", b, day),
        domain.Counted("6", "product.deleted", b, day),
    ]
    batch = domain.aggregate(events)
    assert [(t, d, (c.requests, c.products_created)) for t, d, c in batch.daily] == [
        (a, day, (2, 0)),
        (b, date(2026, 11, 30), (0, 1)),
        (b, day, (6, 0)),
    ]
    assert batch.monthly == [(a, date(2026, 12, 1), 2), (b, date(2026, 12, 1), 6)]
    assert batch.product_delta == {b: -1}


def test_a_level_metric_crosses_once_until_it_falls_back_below() -> None:
    tenant = uuid.uuid4()
    decisions = domain.Decisions()
    tracker = LevelTracker({(tenant, domain.PRODUCTS): LevelState(episodes=1, open=False)}, decisions)
    for value in (9, 10, 11, 10, 9, 12):
        tracker.observe(tenant, domain.PRODUCTS, value, 10)
    assert [(c.period, c.value) for c in decisions.crossings] == [("episode-2", 10), ("episode-3", 12)]
    assert decisions.resolved == [(tenant, domain.PRODUCTS, "episode-2")]
    assert decisions.crossings[0].event_id == domain.crossing_event_id(tenant, domain.PRODUCTS, "episode-2")


def test_requests_cross_once_per_month_with_the_plans_limit_as_its_own_metric() -> None:
    tenant = uuid.uuid4()
    basic = PlanLimits.from_limits(
        {"max_products": 1000, "max_requests_per_month": 10000, "max_storage_gb": 5}
    )
    unlimited = PlanLimits.from_limits({"max_products": -1, "max_requests_per_month": -1})
    found = domain.monthly_crossings(tenant, date(2026, 12, 1), 100_000, Triggers(), basic)
    assert [(c.metric, c.period, c.threshold) for c in found] == [
        ("requests_per_month", "2026-12", Decimal(100_000)),
        ("plan_max_requests_per_month", "2026-12", Decimal(10_000)),
    ]
    assert domain.monthly_crossings(tenant, date(2026, 12, 1), 99_999, Triggers(), unlimited) == []


def test_a_crossing_event_is_the_contracts_envelope() -> None:
    crossing = domain.Crossing(uuid.uuid4(), domain.STORAGE_GB, "episode-1", Decimal("10.5"), Decimal(10))
    envelope = crossing.envelope(datetime(2026, 12, 1, tzinfo=UTC))
    assert envelope.event_type == "tenant.threshold_crossed"
    assert envelope.event_id == crossing.event_id
    assert envelope.data == {"metric": "storage_gb", "value": 10.5, "threshold": 10, "period": "episode-1"}


_VALUES: dict[str, list[Any]] = {
    "event_id": [str(uuid.uuid4()), str(uuid.uuid4()).upper(), "x", 7, None],
    "tenant_id": [str(uuid.uuid4()), str(uuid.uuid4()).upper(), uuid.uuid4().hex, "", None],
    "occurred_at": ["2026-11-30T23:59:59+00:00", "2026-12-01T01:00:00+02:00", "2026-12-01T00:00:00", "x", 1],
    "count": [0, 3, -1, True, 2.5, "3", None],
    "window_start": ["2026-12-01T00:30:00+01:00", "2026-12-01T00:00:00Z", "2026-12-01", "later", None],
    "counter_id": [str(uuid.uuid4()), str(uuid.uuid4()).upper(), "c", None],
    "sequence": [1, 9, 0, False, "2", None],
}


def _outcome(parse: Any, value: bytes) -> object:
    try:
        event = parse(value)
    except InvalidEvent:
        return "refused"
    if event is None:
        return None
    return (
        event.event_id,
        event.event_type,
        event.tenant_id,
        event.day,
        event.requests,
        event.counter,
        event.sequence,
    )


@settings(max_examples=400, deadline=None)
@given(
    event_type=st.sampled_from([*sorted(domain.COUNTED), "order.status_changed"]),
    choice=st.fixed_dictionaries({name: st.sampled_from(values) for name, values in _VALUES.items()}),
    missing=st.sets(st.sampled_from(sorted(_VALUES))),
)
def test_the_fast_path_agrees_with_the_validating_path(
    event_type: str, choice: dict[str, Any], missing: set[str]
) -> None:
    """Whatever the typed decoder accepts, the hand-written validating path decides the same way."""
    envelope_keys = ("event_id", "tenant_id", "occurred_at")
    body: dict[str, Any] = {"event_type": event_type, "schema_version": 1, "producer": "test"}
    body |= {k: choice[k] for k in envelope_keys if k not in missing}
    body["data"] = {k: v for k, v in choice.items() if k not in envelope_keys and k not in missing}
    value = json.dumps(body).encode()
    fast = _outcome(domain.parse, value)
    with pytest.MonkeyPatch.context() as patched:
        patched.setattr(domain, "_fast", lambda _value: None)
        assert fast == _outcome(domain.parse, value)


_TENANTS = [uuid.UUID(int=n * 2**100 + 7) for n in (3, 1, 2)]
_COUNTERS = [str(uuid.UUID(int=n * 2**90 + 5)) for n in (2, 1)]
_STAMPS = ["2026-11-30T23:59:59.5+00:00", "2026-12-01T00:00:00Z", "2026-12-01T00:30:00+01:00"]
_ID_POOL = [str(uuid.UUID(int=n + 1)) for n in range(6)]  # small: ids repeat, as redeliveries do

_EVENT = st.fixed_dictionaries(
    {
        "kind": st.sampled_from(
            [
                "numbered",
                "numbered",
                "numbered",
                "unnumbered",
                "product.created",
                "product.deleted",
                "order.placed",
                "tenant.plan_changed",
                "order.status_changed",
                "malformed",
            ]
        ),
        "tenant": st.integers(0, len(_TENANTS) - 1),
        "upper": st.booleans(),
        "stamp": st.sampled_from(_STAMPS),
        "count": st.integers(0, 5),
        "counter": st.integers(0, len(_COUNTERS) - 1),
        "step": st.sampled_from([1, 1, 1, 2, 0, -1]),  # 0 and -1: a sequence repeated or going back
        "event_id": st.one_of(st.uuids().map(str), st.sampled_from(_ID_POOL)),
    }
)


def _encoded(events: list[dict[str, Any]]) -> list[bytes]:
    sequences = dict.fromkeys(((c, t) for c in range(len(_COUNTERS)) for t in range(len(_TENANTS))), 0)
    values = []
    for event in events:
        tenant = str(_TENANTS[event["tenant"]])
        body: dict[str, Any] = {
            "event_id": event["event_id"],
            "tenant_id": tenant.upper() if event["upper"] else tenant,
            "occurred_at": event["stamp"],
            "schema_version": 1,
            "producer": "test",
        }
        kind = event["kind"]
        if kind in ("numbered", "unnumbered"):
            body["event_type"] = "api.requests_counted"
            body["data"] = _window(event["stamp"], event["count"])
            if kind == "numbered":
                key = (event["counter"], event["tenant"])
                sequences[key] = max(1, sequences[key] + event["step"])
                counter = _COUNTERS[event["counter"]]
                body["data"] |= {"counter_id": counter.upper() if event["upper"] else counter}
                body["data"]["sequence"] = sequences[key]
        elif kind == "malformed":
            body["event_type"] = "api.requests_counted"
            body["data"] = {"count": "many"}
        else:
            body["event_type"] = kind
            body["data"] = {"new_plan": "enterprise"} if kind == "tenant.plan_changed" else {}
        values.append(json.dumps(body).encode())
    return values


def _parsed(values: list[bytes]) -> list[domain.Counted]:
    found = []
    for value in values:
        try:
            event = domain.parse(value)
        except InvalidEvent:
            continue
        if event is not None:
            found.append(event)
    return found


@settings(max_examples=300, deadline=None)
@given(events=st.lists(_EVENT, max_size=40), split=st.integers(0, 40))
def test_a_tally_is_the_aggregate_of_the_parsed_events_whenever_it_calls_itself_regular(
    events: list[dict[str, Any]], split: int
) -> None:
    """The tally (the consumer's batch aggregated while parsed, no object per event) against the
    events parsed one by one: the same per-key sums, states, counts, marks and ids; and it calls the
    batch irregular exactly when a (counter, tenant)'s sequence fails to increase or an id is repeated
    (the database then decides each event on its own)."""
    values = _encoded(events)
    tally = domain.Tally()
    refused = tally.add_values(values[:split]) + [
        (index + min(split, len(values)), why) for index, why in tally.add_values(values[split:])
    ]
    parsed = _parsed(values)
    refusals = [i for i, value in enumerate(values) if b'"many"' in value]
    assert [index for index, _ in refused] == refusals

    spans: dict[tuple[str, uuid.UUID], list[int]] = {}
    increasing = True
    for event in parsed:
        if event.counter is not None and event.sequence is not None:
            span = spans.setdefault((event.counter, event.tenant_id), [event.sequence, event.sequence - 1])
            increasing &= event.sequence > span[1]
            span[1] = event.sequence
    by_id = [e.event_id for e in parsed if e.counter is None]
    assert tally.regular == (increasing and len(set(by_id)) == len(by_id))
    assert tally.seen_ids == by_id
    assert tally.events == len(parsed)
    assert tally.ignored == sum(b"order.status_changed" in value for value in values)
    if tally.regular:
        assert tally.aggregate() == domain.aggregate(parsed)
        columns = tally.spans()
        found = zip(columns.counters, columns.tenants, columns.firsts, columns.lasts, strict=True)
        assert {(c, uuid.UUID(t)): (f, last) for c, t, f, last in found} == {
            key: (first, last) for key, (first, last) in spans.items()
        }
        assert list(zip(columns.counters, columns.tenants, strict=True)) == sorted(
            zip(columns.counters, columns.tenants, strict=True)
        )
        assert tally.tenants() == sorted({e.tenant_id for e in parsed})
