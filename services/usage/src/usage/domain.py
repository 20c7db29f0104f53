"""usage's rules, no I/O: parsing the events it counts, aggregating a batch per key, and deciding
which thresholds a tenant crossed (and which it fell back below).

Attribution is by the event's own time, never by processing time: a request window by its
`window_start` (the first second it covers; a window merged while Kafka was away is attributed
whole to the day it started), everything else by `occurred_at`; days and months are UTC.

The daily row's counters are what happened that day: `requests_count` requests answered,
`products_count` products created, `orders_count` orders placed. `tenants.product_count` is the
running total (created - deleted).
"""

from __future__ import annotations

import re
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Final, TypeVar

import msgspec
import orjson
from events.envelope import Envelope
from events.failures import InvalidEvent
from events.thresholds import (
    COMPLIANCE_ISOLATION,
    PLAN_ENTERPRISE,
    PLAN_MAX_PRODUCTS,
    PLAN_MAX_REQUESTS,
    PLAN_MAX_STORAGE_GB,
    PRODUCTS,
    REQUESTS_PER_MONTH,
    STORAGE_GB,
    Triggers,
)

Clock = Callable[[], datetime]

REQUESTS_COUNTED: Final = "api.requests_counted"
PRODUCT_CREATED: Final = "product.created"
PRODUCT_DELETED: Final = "product.deleted"
ORDER_PLACED: Final = "order.placed"
TENANT_STATE_EVENTS: Final = frozenset({"tenant.created", "tenant.updated", "tenant.plan_changed"})
# What usage counts; any other event type on its topics is consumed and ignored.
COUNTED: Final = frozenset({REQUESTS_COUNTED, PRODUCT_CREATED, PRODUCT_DELETED, ORDER_PLACED})
_FAST_OTHERS: Final = frozenset({PRODUCT_CREATED, PRODUCT_DELETED, ORDER_PLACED})

INT32_MAX: Final = 2**31 - 1  # tenants' and tenant_usage_metrics' integer columns saturate here

# Metrics of tenant.threshold_crossed (events.thresholds: the migration triggers, then the plans'
# soft limits as distinct metrics).
LEVEL_METRICS: Final = (
    PRODUCTS,
    STORAGE_GB,
    PLAN_ENTERPRISE,
    COMPLIANCE_ISOLATION,
    PLAN_MAX_PRODUCTS,
    PLAN_MAX_STORAGE_GB,
)
MONTHLY_METRICS: Final = (REQUESTS_PER_MONTH, PLAN_MAX_REQUESTS)
METRICS: Final = LEVEL_METRICS + MONTHLY_METRICS
# tenant.threshold_crossed event ids: uuid5 of "<tenant>:<metric>:<period>" in this namespace.
CROSSING_NAMESPACE: Final = uuid.UUID("8f2b6a52-6c1e-4d8e-9a53-2f8a3c1d0b47")
PRODUCER: Final = "usage"


def utc_now() -> datetime:
    return datetime.now(UTC)


def month_of(day: date) -> date:
    return day.replace(day=1)


def month_label(month: date) -> str:
    return f"{month.year:04d}-{month.month:02d}"


# Parsing ---------------------------------------------------------------------------------------


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs ~1 µs more per event
class Counted:
    """One event usage counts or follows, reduced to what it contributes."""

    event_id: str  # canonical lowercase text: compared and sent as it is, never made a UUID object
    event_type: str
    tenant_id: uuid.UUID
    day: date  # UTC day of the event's own time
    requests: int = 0
    # tenant state events: the plan and compliance flag after the change (None: not carried)
    plan: str | None = None
    compliance_isolation: bool | None = None
    # api.requests_counted from a counter that numbers its events (events.models.RequestsCounted):
    # deduplicated by the mark of (counter, tenant) instead of the event id.
    counter: str | None = None
    sequence: int | None = None


def _field(body: Mapping[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    """`name` as the error names it (`data.count`); its last part is the key in `body`."""
    value = body.get(name.rsplit(".", 1)[-1])
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise InvalidEvent(f"{name}: missing or not a {getattr(kind, '__name__', kind)}")
    return value


# Both cases spelled out rather than re.IGNORECASE: half the cost per match (this runs per event).
_CANONICAL_UUID: Final = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)


def _uuid_text(body: Mapping[str, Any], name: str) -> str:
    """A UUID in its canonical text form (what every producer writes), lowercased; cheaper than a
    UUID object per event, and PostgreSQL casts it."""
    value: str = _field(body, name, str)
    if _CANONICAL_UUID.fullmatch(value) is None:
        raise InvalidEvent(f"{name}: not a UUID")
    return value.lower()


def _uuid(body: Mapping[str, Any], name: str) -> uuid.UUID:
    try:
        return uuid.UUID(_field(body, name, str))
    except ValueError as error:
        raise InvalidEvent(f"{name}: not a UUID") from error


def _time(body: Mapping[str, Any], name: str) -> datetime:
    try:
        # msgspec's RFC 3339 parser, the one the typed decoder uses: both paths accept the same texts.
        moment: datetime = msgspec.convert(_field(body, name, str), datetime)
    except msgspec.ValidationError as error:
        raise InvalidEvent(f"{name}: not an RFC 3339 time") from error
    if moment.tzinfo is None:
        raise InvalidEvent(f"{name}: no time zone")
    return moment


# Ids as sent -> their checked form, bounded (a few tenants carry most events; a counter is a service
# process). Only checked texts are kept, so a hit needs no check again: the regular expression match
# costs more than the rest of an event.
_TENANT_IDS: dict[str, uuid.UUID] = {}
_TENANT_TEXTS: dict[str, str] = {}  # as sent -> canonical (lowercase) text
_COUNTER_IDS: dict[str, str] = {}
_IDS_MAX: Final = 100_000
_Checked = TypeVar("_Checked")


def _checked_id(cache: dict[str, _Checked], text: str, make: Callable[[str], _Checked]) -> _Checked | None:
    """`make(text)` for a canonical UUID text (remembered), None for anything else."""
    found = cache.get(text)
    if found is None:
        if _CANONICAL_UUID.fullmatch(text) is None:
            return None
        found = make(text)
        if len(cache) >= _IDS_MAX:
            cache.clear()
        cache[text] = found
    return found


# gc=False: the decoded structs hold no containers, so the cycle collector need not track them (one
# per event, alive for a batch: tracked, they made the collector run every few hundred events).
class _CountedData(msgspec.Struct, gc=False):
    """What usage reads of an event's data (any other field is skipped by the decoder unread)."""

    count: int | None = None
    window_start: datetime | None = None
    counter_id: str | None = None
    sequence: int | None = None


class _CountedEnvelope(msgspec.Struct, gc=False):
    event_id: str
    event_type: str
    tenant_id: str
    occurred_at: datetime
    data: _CountedData


# Typed decoding in C: one pass, no dict per event, fields checked for type as they are read (an int
# is never a bool here, a time is RFC 3339). ~3x orjson.loads followed by dict lookups. Anything it
# refuses goes the validating path, which says what is wrong.
_FAST_DECODER: Final = msgspec.json.Decoder(_CountedEnvelope)


def _utc_day(moment: datetime | None) -> date | None:
    if moment is None:
        return None
    zone = moment.tzinfo
    if zone is UTC:  # msgspec's zone for Z and +00:00
        return moment.date()
    if zone is None:
        return None
    return moment.astimezone(UTC).date()


def _fast(value: bytes) -> Counted | None:
    """The common events' path. None when anything is not as a well-formed event has it, or the event
    is of another kind (tenant state events, types usage ignores): the validating path decides."""
    try:
        envelope = _FAST_DECODER.decode(value)
    except msgspec.MsgspecError:
        return None
    event_type = envelope.event_type
    event_id = envelope.event_id
    if _CANONICAL_UUID.fullmatch(event_id) is None:
        return None
    tenant = _checked_id(_TENANT_IDS, envelope.tenant_id, uuid.UUID)
    if tenant is None:
        return None
    if event_type == REQUESTS_COUNTED:
        data = envelope.data
        count = data.count
        start = data.window_start
        if count is None or count < 0 or start is None:
            return None
        counter: str | None = None
        sequence = data.sequence
        if data.counter_id is not None or sequence is not None:
            if data.counter_id is None or sequence is None or sequence < 1:
                return None
            counter = _checked_id(_COUNTER_IDS, data.counter_id, str.lower)
            if counter is None:
                return None
        day = _utc_day(start)
        if day is None:
            return None
        return Counted(event_id.lower(), REQUESTS_COUNTED, tenant, day, count, None, None, counter, sequence)
    if event_type in _FAST_OTHERS:
        day = _utc_day(envelope.occurred_at)
        if day is None:
            return None
        return Counted(event_id.lower(), event_type, tenant, day)
    return None


def parse(value: bytes | None) -> Counted | None:
    """The envelope's contribution, or None for an event type usage does not follow.

    Raises InvalidEvent (dead-lettered) for anything that is not a contract envelope or whose data
    lacks what usage needs. Hand-written rather than `Envelope.model_validate_json`: this runs for
    every event and is the consumer's first cost after the read (the benchmark's usage.aggregate)."""
    if not value:
        raise InvalidEvent("empty message")
    fast = _fast(value)
    if fast is not None:
        return fast
    try:
        body = orjson.loads(value)  # ~5x the stdlib's speed; also strict (no NaN, valid UTF-8 only)
    except orjson.JSONDecodeError as error:
        raise InvalidEvent(f"not JSON: {error}") from error
    if not isinstance(body, dict):
        raise InvalidEvent("not a JSON object")
    event_type = _field(body, "event_type", str)
    if event_type not in COUNTED and event_type not in TENANT_STATE_EVENTS:
        return None
    event_id = _uuid_text(body, "event_id")
    tenant_id = _uuid(body, "tenant_id")
    data = _field(body, "data", dict)
    if event_type == REQUESTS_COUNTED:
        count = _field(data, "data.count", int)
        if count < 0:
            raise InvalidEvent("data.count: negative")
        start = _time(data, "data.window_start")
        counter: str | None = None
        sequence: int | None = None
        if data.get("counter_id") is not None or data.get("sequence") is not None:
            counter = _uuid_text(data, "data.counter_id")
            sequence = _field(data, "data.sequence", int)
            if sequence < 1:
                raise InvalidEvent("data.sequence: not positive")
        return Counted(
            event_id,
            event_type,
            tenant_id,
            start.astimezone(UTC).date(),
            requests=count,
            counter=counter,
            sequence=sequence,
        )
    day = _time(body, "occurred_at").astimezone(UTC).date()
    if event_type in TENANT_STATE_EVENTS:
        plan = data.get("new_plan") if event_type == "tenant.plan_changed" else data.get("plan")
        compliance = data.get("compliance_isolation")
        return Counted(
            event_id,
            event_type,
            tenant_id,
            day,
            plan=plan if isinstance(plan, str) else None,
            compliance_isolation=compliance if isinstance(compliance, bool) else None,
        )
    return Counted(event_id, event_type, tenant_id, day)


# Aggregation -----------------------------------------------------------------------------------


@dataclass(slots=True)
class DayCounts:
    requests: int = 0
    products_created: int = 0
    orders: int = 0


@dataclass
class Aggregate:
    """A batch reduced to one entry per key, each list sorted by key (upserts in key order cannot
    deadlock against each other, and touch each key once: ON CONFLICT's rule)."""

    daily: list[tuple[uuid.UUID, date, DayCounts]]
    monthly: list[tuple[uuid.UUID, date, int]]
    product_delta: dict[uuid.UUID, int]
    # Per tenant, its state events in their order (a tenant's events share one partition).
    states: dict[uuid.UUID, list[Counted]]
    counted: dict[str, int]  # events per type

    @property
    def tenants(self) -> list[uuid.UUID]:
        touched = {t for t, _, _ in self.daily} | set(self.product_delta) | set(self.states)
        return sorted(touched)


def aggregate(events: Iterable[Counted]) -> Aggregate:
    # Keyed by the tenant UUID's integer, not the UUID: UUID.__hash__/__eq__ are Python functions,
    # an int's are not (this loop runs once per event). The integer also sorts as the UUID's text
    # and as PostgreSQL's uuid (big-endian bytes) do.
    tenants: dict[int, uuid.UUID] = {}
    daily: dict[tuple[int, date], DayCounts] = {}
    monthly: dict[tuple[int, date], int] = defaultdict(int)
    months: dict[date, date] = {}
    product_delta: dict[uuid.UUID, int] = defaultdict(int)
    states: dict[uuid.UUID, list[Counted]] = defaultdict(list)
    counted: dict[str, int] = defaultdict(int)
    for event in events:
        kind = event.event_type
        counted[kind] += 1
        if kind == REQUESTS_COUNTED:
            if event.requests:
                tenant = event.tenant_id
                number = tenant.int
                tenants[number] = tenant
                day = event.day
                key = (number, day)
                counts = daily.get(key)
                if counts is None:
                    counts = daily[key] = DayCounts()
                counts.requests += event.requests
                month = months.get(day)
                if month is None:
                    month = months[day] = month_of(day)
                monthly[(number, month)] += event.requests
        elif kind == PRODUCT_CREATED:
            number = event.tenant_id.int
            tenants[number] = event.tenant_id
            counts = daily.get((number, event.day))
            if counts is None:
                counts = daily[(number, event.day)] = DayCounts()
            counts.products_created += 1
            product_delta[event.tenant_id] += 1
        elif kind == PRODUCT_DELETED:
            product_delta[event.tenant_id] -= 1
        elif kind == ORDER_PLACED:
            number = event.tenant_id.int
            tenants[number] = event.tenant_id
            counts = daily.get((number, event.day))
            if counts is None:
                counts = daily[(number, event.day)] = DayCounts()
            counts.orders += 1
        else:
            states[event.tenant_id].append(event)
    return Aggregate(
        daily=[(tenants[t], d, c) for (t, d), c in sorted(daily.items())],
        monthly=[(tenants[t], m, n) for (t, m), n in sorted(monthly.items())],
        product_delta=dict(product_delta),
        states=dict(states),
        counted=dict(counted),
    )


@dataclass(frozen=True, slots=True)
class MarkColumns:
    counters: list[str]
    tenants: list[str]
    firsts: list[int]
    lasts: list[int]


def _tenant_uuid(text: str) -> uuid.UUID:
    """The UUID of a canonical tenant id text (from the same bounded cache as the ids as sent)."""
    found = _checked_id(_TENANT_IDS, text, uuid.UUID)
    assert found is not None, text  # a tally's keys are checked texts
    return found


class Tally:
    """A batch aggregated while it is parsed, no object per event: the common case, in which no event
    of the batch was counted before.

    Keys are the tenants' canonical id texts (a str hashes in C and keeps its hash; a UUID's
    `__hash__` is Python). Whether the batch really is that common case is known only in the
    database: `regular` says what the batch alone shows (each (counter, tenant)'s sequences strictly
    increasing, no event id twice); the unit of work checks the rest (offsets, counter marks, event
    ids seen before, unknown tenants) and otherwise applies the exactly parsed batch
    (`parse` per record, `aggregate`), which decides each event on its own.
    """

    __slots__ = (
        "_seen",
        "counted",
        "daily",
        "events",
        "ignored",
        "marks",
        "others",
        "product_delta",
        "regular",
        "seen_ids",
        "states",
    )

    def __init__(self) -> None:
        self.daily: dict[tuple[str, date], list[int]] = {}  # [requests, products created, orders]
        self.product_delta: dict[str, int] = {}
        self.marks: dict[tuple[str, str], list[int]] = {}  # (counter, tenant): [first, last] sequence
        self.seen_ids: list[str] = []  # ids of the events deduplicated by id (not numbered ones)
        self.states: dict[str, list[Counted]] = {}  # tenant state events, per tenant in order
        self.others: set[str] = set()  # tenants of events that leave no key above (a 0-request window)
        self.counted: dict[str, int] = {}  # events per type
        self.events = 0  # events counted or followed
        self.ignored = 0  # events of types usage does not follow
        self.regular = True
        self._seen: set[str] = set()

    def add_values(self, values: Iterable[bytes | None]) -> list[tuple[int, InvalidEvent]]:
        """Adds one partition's record values in offset order; returns (index, why) of those refused
        (dead-lettered). The loop is the consumer's per-event cost: the well-formed counted events
        (numbered request counts, products, orders) are handled inline, with the checks `parse`
        makes; anything else goes through `parse` and `add`. (Monthly sums are derived from the
        daily ones when the tally is folded: two dictionary updates fewer per event.)"""
        refused: list[tuple[int, InvalidEvent]] = []
        decode = _FAST_DECODER.decode
        match_id = _CANONICAL_UUID.fullmatch
        tenant_texts = _TENANT_TEXTS
        counter_ids = _COUNTER_IDS
        daily = self.daily
        marks = self.marks
        seen = self._seen
        seen_ids = self.seen_ids
        product_delta = self.product_delta
        counted_requests = 0
        for index, value in enumerate(values):
            try:
                envelope = decode(value) if value else None
            except msgspec.MsgspecError:
                envelope = None
            if envelope is not None:
                kind = envelope.event_type
                tenant = tenant_texts.get(envelope.tenant_id) or _checked_id(
                    tenant_texts, envelope.tenant_id, str.lower
                )
                if kind == REQUESTS_COUNTED:
                    data = envelope.data
                    count = data.count
                    sequence = data.sequence
                    counter = (
                        counter_ids.get(data.counter_id)
                        or _checked_id(counter_ids, data.counter_id, str.lower)
                        if data.counter_id is not None
                        else None
                    )
                    start = data.window_start
                    if (
                        tenant is not None
                        and counter is not None
                        and sequence is not None
                        and sequence >= 1
                        and count is not None
                        and count >= 0
                        and start is not None
                        and start.tzinfo is UTC
                        and match_id(envelope.event_id) is not None
                    ):
                        counted_requests += 1
                        key = (counter, tenant)
                        span = marks.get(key)
                        if span is None:
                            marks[key] = [sequence, sequence]
                        elif sequence > span[1]:
                            span[1] = sequence
                        else:
                            self.regular = False
                        if count:
                            day_key = (tenant, start.date())
                            counts = daily.get(day_key)
                            if counts is None:
                                daily[day_key] = [count, 0, 0]
                            else:
                                counts[0] += count
                        continue
                elif kind in _FAST_OTHERS and tenant is not None:
                    event_id = envelope.event_id
                    day = _utc_day(envelope.occurred_at)
                    if day is not None and match_id(event_id) is not None:
                        event_id = event_id.lower()
                        if event_id in seen:
                            self.regular = False
                        seen.add(event_id)
                        seen_ids.append(event_id)
                        self.events += 1
                        self.counted[kind] = self.counted.get(kind, 0) + 1
                        if kind == PRODUCT_DELETED:
                            product_delta[tenant] = product_delta.get(tenant, 0) - 1
                            continue
                        day_key = (tenant, day)
                        counts = daily.get(day_key)
                        if counts is None:
                            counts = daily[day_key] = [0, 0, 0]
                        if kind == PRODUCT_CREATED:
                            counts[1] += 1
                            product_delta[tenant] = product_delta.get(tenant, 0) + 1
                        else:
                            counts[2] += 1
                        continue
            # Everything else (other types, an unnumbered window, another zone, anything
            # malformed): the one-event path.
            try:
                event = parse(value)
            except InvalidEvent as refusal:
                refused.append((index, refusal))
                continue
            if event is None:
                self.ignored += 1
            else:
                self.add(event)
        if counted_requests:
            self.events += counted_requests
            self.counted[REQUESTS_COUNTED] = self.counted.get(REQUESTS_COUNTED, 0) + counted_requests
        return refused

    def add(self, event: Counted) -> None:
        """One parsed event, as `aggregate` counts it."""
        self.events += 1
        kind = event.event_type
        self.counted[kind] = self.counted.get(kind, 0) + 1
        tenant = str(event.tenant_id)
        if event.counter is not None and event.sequence is not None:
            key = (event.counter, tenant)
            span = self.marks.get(key)
            if span is None:
                self.marks[key] = [event.sequence, event.sequence]
            elif event.sequence > span[1]:
                span[1] = event.sequence
            else:
                self.regular = False
        else:
            if event.event_id in self._seen:
                self.regular = False
            self._seen.add(event.event_id)
            self.seen_ids.append(event.event_id)
        if kind == REQUESTS_COUNTED:
            if not event.requests:
                self.others.add(tenant)
                return
            self._day(tenant, event.day)[0] += event.requests
        elif kind == PRODUCT_CREATED:
            self._day(tenant, event.day)[1] += 1
            self.product_delta[tenant] = self.product_delta.get(tenant, 0) + 1
        elif kind == PRODUCT_DELETED:
            self.product_delta[tenant] = self.product_delta.get(tenant, 0) - 1
        elif kind == ORDER_PLACED:
            self._day(tenant, event.day)[2] += 1
        else:
            self.states.setdefault(tenant, []).append(event)

    def _day(self, tenant: str, day: date) -> list[int]:
        counts = self.daily.get((tenant, day))
        if counts is None:
            counts = self.daily[(tenant, day)] = [0, 0, 0]
        return counts

    def tenants(self) -> list[uuid.UUID]:
        """Every tenant an event of the batch names, in id order."""
        named = {t for t, _ in self.daily} | {t for _, t in self.marks}
        named |= set(self.product_delta) | set(self.states) | self.others
        return [_tenant_uuid(text) for text in sorted(named)]

    def aggregate(self) -> Aggregate:
        """The batch as `aggregate` reduces it when every event in it is fresh. (Canonical texts sort
        as the UUIDs do.)"""
        return Aggregate(
            daily=[
                (_tenant_uuid(t), d, DayCounts(c[0], c[1], c[2])) for (t, d), c in sorted(self.daily.items())
            ],
            monthly=[(_tenant_uuid(t), m, n) for (t, m), n in sorted(self._monthly().items())],
            product_delta={_tenant_uuid(t): n for t, n in self.product_delta.items()},
            states={_tenant_uuid(t): events for t, events in self.states.items()},
            counted=dict(self.counted),
        )

    def _monthly(self) -> dict[tuple[str, date], int]:
        months: dict[date, date] = {}
        monthly: dict[tuple[str, date], int] = {}
        for (tenant, day), counts in self.daily.items():
            if counts[0]:
                month = months.get(day)
                if month is None:
                    month = months[day] = month_of(day)
                monthly[(tenant, month)] = monthly.get((tenant, month), 0) + counts[0]
        return monthly

    def spans(self) -> MarkColumns:
        """Each (counter, tenant)'s first and last sequence in the batch, as columns in key order
        (ids as canonical text: PostgreSQL casts them)."""
        ordered = sorted(self.marks.items())
        return MarkColumns(
            counters=[c for (c, _), _ in ordered],
            tenants=[t for (_, t), _ in ordered],
            firsts=[span[0] for _, span in ordered],
            lasts=[span[1] for _, span in ordered],
        )


# Thresholds ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlanLimits:
    """A plan's soft limits (subscription_plans.limits); None: unlimited (the seed's -1)."""

    max_products: int | None
    max_requests_per_month: int | None
    max_storage_gb: float | None

    @classmethod
    def from_limits(cls, limits: Mapping[str, Any]) -> PlanLimits:
        def limit(name: str) -> Any:
            value = limits.get(name)
            return None if not isinstance(value, int | float) or value < 0 else value

        return cls(limit("max_products"), limit("max_requests_per_month"), limit("max_storage_gb"))


@dataclass(frozen=True, slots=True)
class Crossing:
    tenant_id: uuid.UUID
    metric: str
    period: str
    value: Decimal
    threshold: Decimal

    @property
    def event_id(self) -> uuid.UUID:
        """Derived from the crossing's unique key: every replay names the same event."""
        return crossing_event_id(self.tenant_id, self.metric, self.period)

    def envelope(self, occurred_at: datetime) -> Envelope:
        return Envelope(
            event_id=self.event_id,
            event_type="tenant.threshold_crossed",
            tenant_id=self.tenant_id,
            occurred_at=occurred_at,
            producer=PRODUCER,
            data={
                "metric": self.metric,
                "value": float(self.value) if self.value != self.value.to_integral() else int(self.value),
                "threshold": float(self.threshold)
                if self.threshold != self.threshold.to_integral()
                else int(self.threshold),
                "period": self.period,
            },
        )


def crossing_event_id(tenant_id: uuid.UUID, metric: str, period: str) -> uuid.UUID:
    return uuid.uuid5(CROSSING_NAMESPACE, f"{tenant_id}:{metric}:{period}")


@dataclass(slots=True)
class LevelState:
    """Where a level metric stands for a tenant: crossings so far, and whether the last is open."""

    episodes: int = 0
    open: bool = False


@dataclass
class Decisions:
    crossings: list[Crossing] = field(default_factory=list)
    # (tenant, metric, period) of level crossings the value fell back below
    resolved: list[tuple[uuid.UUID, str, str]] = field(default_factory=list)


def episode_period(n: int) -> str:
    return f"episode-{n}"


def _decimal(value: float | int) -> Decimal:
    return Decimal(str(value))


class LevelTracker:
    """Level metrics cross once until the value falls back below, then may cross again: each crossing
    is an episode (period `episode-N`), its key unique in the database."""

    def __init__(self, states: Mapping[tuple[uuid.UUID, str], LevelState], decisions: Decisions) -> None:
        self._states = dict(states)
        self._decisions = decisions

    def observe(
        self, tenant_id: uuid.UUID, metric: str, value: float | int, threshold: float | int | None
    ) -> None:
        if threshold is None:
            return
        state = self._states.setdefault((tenant_id, metric), LevelState())
        if value >= threshold and not state.open:
            state.episodes += 1
            state.open = True
            self._decisions.crossings.append(
                Crossing(
                    tenant_id, metric, episode_period(state.episodes), _decimal(value), _decimal(threshold)
                )
            )
        elif value < threshold and state.open:
            state.open = False
            self._decisions.resolved.append((tenant_id, metric, episode_period(state.episodes)))


def monthly_crossings(
    tenant_id: uuid.UUID, month: date, total: int, triggers: Triggers, limits: PlanLimits | None
) -> list[Crossing]:
    """Requests cross once per calendar month: the period is the month, so a second crossing of the
    same month is the same key (ON CONFLICT DO NOTHING in the database)."""
    period = month_label(month)
    found = []
    if total >= triggers.requests_per_month:
        found.append(
            Crossing(
                tenant_id, REQUESTS_PER_MONTH, period, Decimal(total), Decimal(triggers.requests_per_month)
            )
        )
    if (
        limits is not None
        and limits.max_requests_per_month is not None
        and total >= limits.max_requests_per_month
    ):
        found.append(
            Crossing(
                tenant_id, PLAN_MAX_REQUESTS, period, Decimal(total), _decimal(limits.max_requests_per_month)
            )
        )
    return found


def observe_products(
    tracker: LevelTracker, tenant_id: uuid.UUID, count: int, triggers: Triggers, limits: PlanLimits | None
) -> None:
    tracker.observe(tenant_id, PRODUCTS, count, triggers.products)
    tracker.observe(tenant_id, PLAN_MAX_PRODUCTS, count, limits.max_products if limits else None)


def observe_storage(
    tracker: LevelTracker,
    tenant_id: uuid.UUID,
    gigabytes: float,
    triggers: Triggers,
    limits: PlanLimits | None,
) -> None:
    tracker.observe(tenant_id, STORAGE_GB, gigabytes, triggers.storage_gb)
    tracker.observe(tenant_id, PLAN_MAX_STORAGE_GB, gigabytes, limits.max_storage_gb if limits else None)


def observe_state(tracker: LevelTracker, event: Counted) -> None:
    """Plan and compliance cross on each change to them: enterprise (or isolation) set opens an
    episode, unset closes it, set again opens the next."""
    if event.plan is not None:
        tracker.observe(event.tenant_id, PLAN_ENTERPRISE, 1 if event.plan == "enterprise" else 0, 1)
    if event.compliance_isolation is not None:
        tracker.observe(event.tenant_id, COMPLIANCE_ISOLATION, 1 if event.compliance_isolation else 0, 1)
