"""`kuaijing compare`: the same seeded night of the simulated city played three times, each with another way of
choosing whom to send, and what came of it side by side.

(a) the nearest free vehicle as the crow flies (what vehicle-location systems offer); (b) the best ETA by the
configured model; (c) the best ETA by the model learned from earlier weeks' drives (the same evening of the weeks
before, played with (b), their fixes built into speed profiles by the dispatcher's own builder), with the idle
vehicles moved up where the dispatcher's move-up advice says after each dispatch; (d) as (c) without moving up, to
tell the two apart. The calls are the
same in every run (their randomness is apart from the vehicles'), so the differences are the choices' doing. The
nights are played in process by the simulator with the dispatcher's domain models, not through the services: the
demo is what shows the services doing it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from services.dispatcher.domain.coverage import coverage_areas
from services.dispatcher.domain.eta import CircuityEta, EtaModel, EtaQuery, eta_s
from services.dispatcher.domain.move_up import MOVE_UP_CLASSES, Demand, Idle, advise, demand_of
from services.dispatcher.domain.speed_profiles import Fix, LearnedEta, SpeedProfiles, Trip
from services.dispatcher.domain.zones import ZoneDefinition, ZoneMap
from services.simulator.city import City, Vehicle
from services.simulator.night import CallRecord, NearestByStraightLine, Night, Operator
from shared.contract.registry import ZONE_TARGET_S, ZoneClass
from shared.geo import great_circle_m
from shared.percentiles import percentile


class NearestByEta:
    """The free vehicle with the best ETA to the call by `model`, as the dispatcher ranks its recommendations; with
    `demand`, after each dispatch the idle vehicles the move-up advice names drive to their posts."""

    def __init__(self, model: EtaModel, zones: ZoneMap, demand: Sequence[Demand] = (), level: float = 0.8) -> None:
        self._model, self._zones, self._demand, self._level = model, zones, demand, level

    def choose(self, call: CallRecord, free: Sequence[Vehicle], now: datetime) -> Vehicle:
        query = EtaQuery((call.lat, call.lon), now, self._zones.classify(lat=call.lat, lon=call.lon))

        def eta(v: Vehicle) -> tuple[float, str]:
            distance = great_circle_m(v.lat, v.lon, call.lat, call.lon)
            return eta_s(self._model, v.kind, (v.lat, v.lon), query, distance), v.unit_id

        return min(free, key=eta)

    def move_up(self, idle: Sequence[Vehicle], now: datetime) -> list[tuple[Vehicle, tuple[float, float]]]:
        if not self._demand:
            return []
        units = {v.unit_id: v for v in idle}
        candidates = [
            Idle(v.unit_id, v.kind, (v.lat, v.lon), self._zones.classify(lat=v.lat, lon=v.lon) in MOVE_UP_CLASSES)
            for v in idle
        ]
        advice = advise(candidates, self._demand, self._model, now, level=self._level)
        return [(units[m.unit_id], m.post) for m in advice.moves]


@dataclass(frozen=True, slots=True)
class ClassOutcome:
    calls: int
    reached: int
    within_target: int
    p50_s: float | None
    p90_s: float | None

    @property
    def within_share(self) -> float | None:
        return self.within_target / self.calls if self.calls else None


@dataclass(frozen=True, slots=True)
class PolicyOutcome:
    policy: str
    classes: dict[ZoneClass, ClassOutcome]


def outcome(policy: str, night: Night, zones: ZoneMap) -> PolicyOutcome:
    """Per zone class: calls, those reached, those reached within the class's target (received to on scene), and
    the median and 90th percentile of the response times of those reached."""
    by_class: dict[ZoneClass, list[CallRecord]] = {}
    for call in night.calls.values():
        by_class.setdefault(zones.classify(lat=call.lat, lon=call.lon), []).append(call)
    classes = {}
    for zone_class, calls in by_class.items():
        responses = [(c.arrived_at - c.received_at).total_seconds() for c in calls if c.arrived_at is not None]
        classes[zone_class] = ClassOutcome(
            calls=len(calls),
            reached=len(responses),
            within_target=sum(1 for r in responses if r <= ZONE_TARGET_S[zone_class]),
            p50_s=percentile(responses, 0.5),
            p90_s=percentile(responses, 0.9),
        )
    return PolicyOutcome(policy, classes)


def trips_of(night: Night) -> list[Trip]:
    """The night's drives that ended on scene, as the dispatcher's store reads them from positions and events."""
    return [
        Trip(d.call_id, d.unit_id, d.kind, d.destination, [Fix(*f) for f in d.fixes], d.arrived_at)
        for d in night.drives.values()
        if d.arrived_at is not None and len(d.fixes) >= 2
    ]


@dataclass(frozen=True)
class Comparison:
    seed: int
    start: datetime
    hours: float
    calls: int
    training_drives: int
    profile_cells: int
    outcomes: tuple[PolicyOutcome, ...]


def compare(
    city: City,
    *,
    start: datetime,
    hours: float,
    call_every_s: float,
    seed: int,
    training_weeks: int = 3,
    level: float = 0.8,
    progress: Callable[[str], None] = lambda _: None,
) -> Comparison:
    definitions = [ZoneDefinition(z.id, z.class_, z.geometry_json()) for z in city.document.zones]
    zones = ZoneMap(definitions)
    configured = CircuityEta()

    def play(operator: Operator, at: datetime, night_seed: int) -> Night:
        night = Night(city, start=at, hours=hours, call_every_s=call_every_s, seed=night_seed, operator=operator)
        for _ in night.ticks():
            pass
        return night

    trips: list[Trip] = []
    for week in range(1, training_weeks + 1):
        earlier = play(NearestByEta(configured, zones), start - timedelta(weeks=week), seed + week)
        trips += trips_of(earlier)
        progress(f"history: the same evening {week} week(s) before: {len(earlier.drives)} drives")
    profiles = SpeedProfiles.build(trips, built_at=start)
    learned = LearnedEta(profiles, configured)
    policies: list[tuple[str, Operator]] = [
        ("(a) nearest by straight line", NearestByStraightLine()),
        ("(b) best ETA, configured model", NearestByEta(configured, zones)),
        (
            "(c) best ETA, learned model + move-up",
            NearestByEta(learned, zones, demand_of(coverage_areas(definitions)), level),
        ),
        ("(d) best ETA, learned model alone", NearestByEta(learned, zones)),
    ]
    outcomes = []
    calls = 0
    for name, operator in policies:
        night = play(operator, start, seed)
        calls = len(night.calls)
        outcomes.append(outcome(name, night, zones))
        progress(f"{name}: {calls} calls, {sum(1 for c in night.calls.values() if c.arrived_at)} reached")
    return Comparison(seed, start, hours, calls, len(trips), profiles.cells, tuple(outcomes))


_COLUMNS = (ZoneClass.KEY_AREA, ZoneClass.CENTRAL_URBAN, ZoneClass.OTHER_URBAN, ZoneClass.RURAL)


def promise_share(policy: PolicyOutcome, classes: Sequence[ZoneClass] = MOVE_UP_CLASSES) -> float | None:
    """The share of the calls in `classes` reached within their target."""
    chosen = [policy.classes[c] for c in classes if c in policy.classes]
    calls = sum(c.calls for c in chosen)
    return sum(c.within_target for c in chosen) / calls if calls else None


def render(comparison: Comparison) -> str:
    """The comparison as the command prints it: per class, the share within target and p50/p90 response."""

    def seconds(value: float | None) -> str:
        return "-" if value is None else f"{value:.0f}"

    head = f"{'':<40}" + "".join(f"{c.value + f' ({ZONE_TARGET_S[c]} s)':<24}" for c in _COLUMNS)
    sub = f"{'policy':<40}" + f"{'within   p50   p90':<24}" * len(_COLUMNS)
    lines = [head.rstrip(), sub.rstrip()]
    for policy in comparison.outcomes:
        cells = []
        for zone_class in _COLUMNS:
            c = policy.classes.get(zone_class)
            share = c.within_share if c else None
            cells.append(
                f"{'-' if share is None else f'{share * 100:.1f}%':>6} {seconds(c.p50_s if c else None):>5} "
                f"{seconds(c.p90_s if c else None):>5}      "
            )
        lines.append((f"{policy.policy:<40}" + "".join(cells)).rstrip())
    shares = [(p.policy.split()[0], promise_share(p)) for p in comparison.outcomes]
    lines.append(
        "key areas and central city together, within target: "
        + ", ".join(f"{name} {'-' if s is None else f'{s * 100:.1f}%'}" for name, s in shares)
    )
    first, third = shares[0][1], shares[2][1]
    if first is not None and third is not None:
        lines.append(f"(c) - (a): {(third - first) * 100:+.1f} points (the aim: at least +10)")
    return "\n".join(lines)
