"""Response-time maths of contract section 6, in plain Python: the definition the SQL reports are checked against.

Per call: received = first `created`; dispatched = first `assigned`; arrived = first `on_scene` (whoever reported
it, console or GPS); dispatch_s, travel_s, response_s are the differences. A call counts under the platform of its
first unit on scene; a call never reached, under the platform of its first assigned unit, or `unassigned`.
Percentiles interpolate linearly between closest ranks (PostgreSQL's `percentile_cont`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from shared.contract.schemas import CallEventKind
from shared.percentiles import Spread

UNASSIGNED = "unassigned"


@dataclass(frozen=True, slots=True)
class Event:
    event: CallEventKind
    ts: datetime
    unit_id: str | None = None
    platform_id: str | None = None


@dataclass(frozen=True, slots=True)
class CallFacts:
    call_id: str
    received_at: datetime | None
    dispatched_at: datetime | None
    arrived_at: datetime | None
    closed_at: datetime | None
    target_s: int
    zone_class: str
    first_unit_id: str | None
    platform_id: str

    @property
    def arrived(self) -> bool:
        return self.arrived_at is not None and self.received_at is not None

    @property
    def dispatch_s(self) -> float | None:
        return _seconds(self.received_at, self.dispatched_at)

    @property
    def travel_s(self) -> float | None:
        return _seconds(self.dispatched_at, self.arrived_at)

    @property
    def response_s(self) -> float | None:
        return _seconds(self.received_at, self.arrived_at)

    @property
    def handling_s(self) -> float | None:
        return _seconds(self.received_at, self.closed_at)

    @property
    def target_met(self) -> bool | None:
        response = self.response_s
        return None if response is None else response <= self.target_s


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    return None if start is None or end is None else (end - start).total_seconds()


def _first(events: Sequence[Event], kind: CallEventKind) -> Event | None:
    matching = [e for e in events if e.event is kind]
    return min(matching, key=lambda e: (e.ts, e.unit_id or "")) if matching else None


def call_facts(call_id: str, events: Iterable[Event], *, target_s: int, zone_class: str) -> CallFacts:
    """Fold a call's events, in any order and with repeats, into its facts."""
    unique = sorted(set(events), key=lambda e: (e.ts, e.unit_id or ""))
    created = _first(unique, CallEventKind.CREATED)
    assigned = _first(unique, CallEventKind.ASSIGNED)
    on_scene = _first(unique, CallEventKind.ON_SCENE)
    closed = _first(unique, CallEventKind.CLOSED)
    on_scene_platform = None if on_scene is None else on_scene.platform_id
    assigned_platform = None if assigned is None else assigned.platform_id
    counted_unit = on_scene or assigned
    return CallFacts(
        call_id=call_id,
        received_at=None if created is None else created.ts,
        dispatched_at=None if assigned is None else assigned.ts,
        arrived_at=None if on_scene is None else on_scene.ts,
        closed_at=None if closed is None else closed.ts,
        target_s=target_s,
        zone_class=zone_class,
        first_unit_id=None if counted_unit is None else counted_unit.unit_id,
        platform_id=on_scene_platform or assigned_platform or UNASSIGNED,
    )


@dataclass(frozen=True, slots=True)
class GroupFigures:
    key: str
    calls: int
    not_arrived: int
    dispatch_s: Spread
    travel_s: Spread
    response_s: Spread
    target_met_pct: float | None


def figures(key: str, calls: Sequence[CallFacts]) -> GroupFigures:
    """A group's figures: latency only over arrived calls; never-reached calls counted apart."""
    arrived = [c for c in calls if c.arrived]
    met = [c for c in arrived if c.target_met]

    def values(attribute: str) -> list[float]:
        return [v for c in arrived if (v := getattr(c, attribute)) is not None]

    return GroupFigures(
        key=key,
        calls=len(calls),
        not_arrived=len(calls) - len(arrived),
        dispatch_s=Spread.of(values("dispatch_s")),
        travel_s=Spread.of(values("travel_s")),
        response_s=Spread.of(values("response_s")),
        target_met_pct=None if not arrived else 100.0 * len(met) / len(arrived),
    )
