"""Speed profiles learned from hand-made drives, the learned ETA's fallbacks, its exact search, and the backtest."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta

import h3.api.basic_int as h3i
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.dispatcher.domain.eta import CircuityEta, EtaQuery, LatLon
from services.dispatcher.domain.eta_backtest import backtest
from services.dispatcher.domain.live_map import LiveMap, Position, UnitFilter
from services.dispatcher.domain.speed_profiles import Fix, LearnedEta, ProfileRules, SpeedProfiles, Trip, hour_of_week
from services.dispatcher.service import EtaRanking
from shared.contract.registry import UnitKind, ZoneClass
from shared.errors import KuaijingError
from shared.geo import great_circle_m

MONDAY_8 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
CENTRE: LatLon = h3i.cell_to_latlng(h3i.latlng_to_cell(27.24, 111.46, ProfileRules().resolution))
"""The centre of a profile cell: drives of 150 m from it stay inside."""
M_PER_DEG = 111_195.0


def east(point: LatLon, metres: float) -> LatLon:
    return point[0], point[1] + metres / (M_PER_DEG * math.cos(math.radians(point[0])))


def drive(
    start: LatLon,
    goal: LatLon,
    *,
    kmh: float,
    at: datetime = MONDAY_8,
    every_s: float = 2.0,
    kind: UnitKind = UnitKind.PATROL_CAR,
    call_id: str = "C1",
) -> Trip:
    """Straight at `goal` at `kmh`, a fix every `every_s` seconds, arriving on the last fix."""
    distance = great_circle_m(*start, *goal)
    steps = max(1, math.ceil(distance / (kmh / 3.6) / every_s))
    fixes = [
        Fix(
            at + timedelta(seconds=i * distance / (kmh / 3.6) / steps),
            start[0] + (goal[0] - start[0]) * i / steps,
            start[1] + (goal[1] - start[1]) * i / steps,
        )
        for i in range(steps + 1)
    ]
    return Trip(call_id, "U1", kind, goal, fixes, fixes[-1].ts)


def cell_of(point: LatLon) -> int:
    return int(h3i.latlng_to_cell(point[0], point[1], ProfileRules().resolution))


RAW = ProfileRules(prior_metres=0.0)
"""Profiles taken as measured, not shrunk towards the configured model."""


def query(goal: LatLon, at: datetime = MONDAY_8) -> EtaQuery:
    return EtaQuery(goal, at, ZoneClass.CENTRAL_URBAN)


def test_a_cell_driven_straight_at_the_call_learns_the_speed_driven() -> None:
    goal = east(CENTRE, 150)
    trips = [drive(CENTRE, goal, kmh=36.0, call_id=f"C{i}") for i in range(10)]
    assert cell_of(CENTRE) == cell_of(goal)
    learned = LearnedEta(SpeedProfiles.build(trips, built_at=MONDAY_8, rules=RAW), CircuityEta())
    assert learned.seconds_per_metre(UnitKind.PATROL_CAR, CENTRE, query(goal)) == pytest.approx(0.1, rel=1e-6)


def test_a_profile_is_shrunk_towards_the_configured_model_by_the_driving_seen_in_it() -> None:
    goal = east(CENTRE, 150)
    configured = CircuityEta()
    prior = configured.rate(UnitKind.PATROL_CAR, ZoneClass.CENTRAL_URBAN)
    for drives in (10, 100):
        trips = [drive(CENTRE, goal, kmh=36.0, call_id=f"C{i}") for i in range(drives)]
        learned = LearnedEta(SpeedProfiles.build(trips, built_at=MONDAY_8), configured)
        metres = 150.0 * drives
        expected = (0.1 * metres + ProfileRules().prior_metres * prior) / (metres + ProfileRules().prior_metres)
        assert learned.seconds_per_metre(UnitKind.PATROL_CAR, CENTRE, query(goal)) == pytest.approx(expected)


def test_driving_across_the_way_to_the_call_makes_no_ground_and_is_slow_not_negative() -> None:
    goal = (CENTRE[0] + 0.05, CENTRE[1])
    around = [drive(CENTRE, east(CENTRE, 100), kmh=36.0, call_id=f"C{i}") for i in range(10)]
    sideways = [Trip(t.call_id, t.unit_id, t.kind, goal, t.fixes, t.arrived_at) for t in around]
    profiles = SpeedProfiles.build(sideways, built_at=MONDAY_8, rules=RAW)
    assert profiles.rate(UnitKind.PATROL_CAR, CENTRE, hour_of_week(MONDAY_8), 0.1) == pytest.approx(3.6 / RAW.floor_kmh)


def test_thin_data_falls_back_to_coarser_profiles_and_then_to_the_configured_model() -> None:
    goal = east(CENTRE, 150)
    configured = CircuityEta()
    once = LearnedEta(SpeedProfiles.build([drive(CENTRE, goal, kmh=36.0)], built_at=MONDAY_8), configured)
    expected = configured.rate(UnitKind.PATROL_CAR, ZoneClass.CENTRAL_URBAN)
    assert once.seconds_per_metre(UnitKind.PATROL_CAR, CENTRE, query(goal)) == pytest.approx(expected)

    often = [drive(CENTRE, goal, kmh=36.0, call_id=f"C{i}") for i in range(10)]
    learned = LearnedEta(SpeedProfiles.build(often, built_at=MONDAY_8, rules=RAW), configured)
    tuesday_night = MONDAY_8 + timedelta(days=1, hours=14)
    assert learned.seconds_per_metre(UnitKind.PATROL_CAR, CENTRE, query(goal, tuesday_night)) == pytest.approx(0.1)
    assert learned.seconds_per_metre(UnitKind.MOTORCYCLE, CENTRE, query(goal)) == pytest.approx(
        configured.rate(UnitKind.MOTORCYCLE, ZoneClass.CENTRAL_URBAN)
    )


def test_the_hour_of_week_keeps_a_rush_hour_apart_from_the_rest_of_the_day() -> None:
    goal = east(CENTRE, 150)
    rush = [drive(CENTRE, goal, kmh=18.0, at=MONDAY_8 + timedelta(weeks=w), call_id=f"R{w}") for w in range(6)]
    night = MONDAY_8 + timedelta(hours=14)
    quiet = [drive(CENTRE, goal, kmh=54.0, at=night + timedelta(weeks=w), call_id=f"Q{w}") for w in range(6)]
    learned = LearnedEta(SpeedProfiles.build(rush + quiet, built_at=MONDAY_8, rules=RAW), CircuityEta())
    assert learned.seconds_per_metre(UnitKind.PATROL_CAR, CENTRE, query(goal)) == pytest.approx(0.2)
    assert learned.seconds_per_metre(UnitKind.PATROL_CAR, CENTRE, query(goal, night)) == pytest.approx(3.6 / 54)


def test_fixes_too_far_apart_say_nothing() -> None:
    goal = east(CENTRE, 150)
    sparse = [drive(CENTRE, goal, kmh=1.0, every_s=200.0, call_id=f"C{i}") for i in range(10)]
    assert SpeedProfiles.build(sparse, built_at=MONDAY_8).tallies == {}


@pytest.mark.no_cover
@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), k=st.integers(1, 6))
def test_nearest_by_learned_eta_is_exact(seed: int, k: int) -> None:
    """Whatever the profiles, the search returns the k smallest learned ETAs, as sorting every unit would."""
    rng = random.Random(seed)

    def point() -> LatLon:
        return CENTRE[0] + rng.uniform(-0.06, 0.06), CENTRE[1] + rng.uniform(-0.06, 0.06)

    trips = [
        drive(point(), point(), kmh=rng.uniform(5, 90), kind=rng.choice(list(UnitKind)), call_id=f"T{i}")
        for i in range(25)
    ]
    rules = RAW if seed % 2 else ProfileRules()
    learned = LearnedEta(SpeedProfiles.build(trips, built_at=MONDAY_8, rules=rules), CircuityEta())
    live = LiveMap(resolution=8)
    for i in range(60):
        unit_id = f"U{i:02d}"
        kind = rng.choice(list(UnitKind))
        live.upsert_unit(unit_id=unit_id, platform_id="P1", kind=kind, callsign=unit_id, terminal_id=None)
        live.apply_position(unit_id, Position(MONDAY_8, *point()))
    goal = point()
    at = EtaQuery(goal, MONDAY_8, ZoneClass.CENTRAL_URBAN)
    found = live.nearest(
        lat=goal[0], lon=goal[1], k=k, now=MONDAY_8, unit_filter=UnitFilter(), ranking=EtaRanking(learned, at)
    )

    def eta(unit_id: str) -> float:
        unit = live.units[unit_id]
        assert unit.position is not None
        origin = (unit.position.lat, unit.position.lon)
        return great_circle_m(*origin, *goal) * learned.seconds_per_metre(unit.kind, origin, at)

    best = sorted(eta(u) for u in live.units)[:k]
    assert [f.score for f in found] == pytest.approx(best, rel=1e-6)


def test_the_backtest_learns_from_earlier_drives_and_judges_both_models_on_later_ones() -> None:
    """West of the centre the streets are slow, east of it fast; the configured model knows neither."""
    rng = random.Random(7)
    trips = []
    for i in range(120):
        start = east(CENTRE, rng.choice((-1, 1)) * rng.uniform(300, 2500))
        goal = east(start, rng.choice((-1, 1)) * rng.uniform(300, 700))
        kmh = 12.0 if start[1] < CENTRE[1] else 60.0
        trips.append(drive(start, goal, kmh=kmh, at=MONDAY_8 + timedelta(weeks=i % 4, minutes=i), call_id=f"C{i}"))
    central = lambda _: ZoneClass.CENTRAL_URBAN  # noqa: E731
    result = backtest(trips, configured=CircuityEta(), zone_class_of=central)
    assert (result.trained_on, result.tested_on) == (84, 36)
    assert result.split_at == min(t.fixes[0].ts for t in sorted(trips, key=lambda t: t.fixes[0].ts)[84:])
    configured, learned = result.models
    assert (configured.model, learned.model) == ("configured", "learned")
    assert learned.median_abs_s < configured.median_abs_s / 2
    assert learned.p90_abs_s < configured.p90_abs_s
    shuffled = backtest(
        trips, configured=CircuityEta(), zone_class_of=lambda _: ZoneClass.CENTRAL_URBAN, shuffle_seed=3
    )
    assert (shuffled.trained_on, shuffled.tested_on) == (84, 36)
    assert shuffled.split_at < result.split_at, "drives of every week are tested"
    assert shuffled.models[1].median_abs_s < shuffled.models[0].median_abs_s / 2


def test_a_backtest_with_too_few_drives_says_so() -> None:
    with pytest.raises(KuaijingError, match="too few"):
        backtest(
            [drive(CENTRE, east(CENTRE, 200), kmh=30)],
            configured=CircuityEta(),
            zone_class_of=lambda _: ZoneClass.RURAL,
        )
