from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone, tzinfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic_core import TzInfo

from services.dispatcher.domain.eta import CircuityEta, EtaQuery, eta_s
from services.dispatcher.domain.h3_index import ByDistance, unit_vector
from services.dispatcher.domain.live_map import LiveMap, Position, UnitFilter, resolution_for
from services.dispatcher.domain.zones import ZoneDefinition, ZoneMap, validate_geometry
from services.dispatcher.service import EtaRanking
from shared.contract.registry import UnitKind, ZoneClass
from shared.contract.schemas import UnitStatus
from shared.errors import InvalidError
from shared.geo import great_circle_m

NOW = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


def square(x0: float, y0: float, size: float) -> dict[str, object]:
    ring = [[x0, y0], [x0 + size, y0], [x0 + size, y0 + size], [x0, y0 + size], [x0, y0]]
    return {"type": "Polygon", "coordinates": [ring]}


def fleet() -> LiveMap:
    live = LiveMap(resolution=9)
    for unit_id, kind in [("car", UnitKind.PATROL_CAR), ("moto", UnitKind.MOTORCYCLE), ("cmd", UnitKind.COMMAND_CAR)]:
        live.upsert_unit(unit_id=unit_id, platform_id="P1", kind=kind, callsign=unit_id, terminal_id=None)
    return live


def test_positions_move_units_only_forward_in_event_time_and_only_with_a_fix() -> None:
    live = fleet()
    assert live.apply_position("car", Position(NOW, 27.24, 111.46))
    assert not live.apply_position("car", Position(NOW - timedelta(seconds=1), 27.30, 111.50))
    assert not live.apply_position("car", Position(NOW + timedelta(seconds=1), 27.30, 111.50), fix=False)
    assert not live.apply_position("ghost", Position(NOW, 27.30, 111.50))
    assert live.units["car"].position == Position(NOW, 27.24, 111.46)


_ZONES = st.sampled_from([UTC, timezone(timedelta(hours=8)), timezone(timedelta(hours=-3, minutes=-30)), TzInfo(0)])


@settings(max_examples=200, deadline=None)
@given(
    fixes=st.lists(
        st.tuples(
            st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1)),
            _ZONES,
            st.one_of(st.floats(27.2395, 27.2405), st.floats(-89.9, 89.9)),
            st.one_of(st.floats(111.4695, 111.4705), st.floats(-180.0, 180.0)),
        ),
        min_size=1,
        max_size=30,
    )
)
def test_a_fix_sets_the_unit_and_its_bucket_exactly_as_python_computes_them(
    fixes: list[tuple[datetime, tzinfo, float, float]],
) -> None:
    # The update is C (`_index_update.c`): its epoch must be the datetime's own `timestamp()` and its unit vector
    # `unit_vector`'s, to the last bit, in every time zone; a fix no newer than the held one changes nothing. Most
    # fixes stay within a few tens of metres (refreshed in the bucket by C), some jump anywhere (placed by the index).
    live = fleet()
    for naive, zone, lat, lon in fixes:
        position = Position(naive.replace(tzinfo=zone), lat, lon)
        before = live.units["car"].position_epoch
        moved = live.apply_position("car", position)
        unit = live.units["car"]
        assert moved == (position.ts.timestamp() > before)
        if moved:
            assert unit.position == position
            assert unit.position_epoch == position.ts.timestamp()
            assert unit.xyz == unit_vector(lat, lon)
            assert unit.cell == live._index.cell_of(lat, lon), "held in a cell H3 does not give"
        else:
            assert unit.position_epoch == before
        assert unit.cell is not None
        bucket = live._index.layers[unit.status][unit.cell]
        slot = unit.slot
        assert bucket.entries[slot] is unit
        assert tuple(bucket.coords[4 * slot + 4 : 4 * slot + 8]) == (*unit.xyz, unit.position_epoch)
    assert live.newest == max((p for p in (u.position for u in live.units.values()) if p), key=lambda p: p.ts).ts


def assert_each_unit_held_once_where_h3_puts_it(live: LiveMap) -> None:
    """The index's own bookkeeping, as `_index_update.c` and `h3_index.Bucket` must leave it after any updates: each
    positioned unit in exactly one bucket, of its status's layer and of the cell H3 gives for its position, at the
    slot it names, with its packed coordinates; no empty bucket, every bucket knowing its cell and layer."""
    held: list[str] = []
    for status, cells in live._index.layers.items():
        for cell, bucket in cells.items():
            assert len(bucket) > 0, "an empty bucket left in its layer"
            assert (bucket.cell, bucket.cells) == (cell, cells)
            assert len(bucket.entries) == len(bucket.coords) // 4 - 1
            assert tuple(bucket.coords[:4]) == live._index.sure_disk(cell)
            for slot, unit in enumerate(bucket.entries):
                assert unit is live.units[unit.unit_id]
                assert unit.status is status
                assert (unit.bucket, unit.slot) == (bucket, slot)
                assert unit.position is not None
                assert cell == live._index.cell_of(unit.position.lat, unit.position.lon)
                assert tuple(bucket.coords[4 * slot + 4 : 4 * slot + 8]) == (*unit.xyz, unit.position_epoch)
                held.append(unit.unit_id)
    assert sorted(held) == sorted(u.unit_id for u in live.units.values() if u.position is not None)
    assert len(live._index) == len(held)


def test_statuses_apply_in_event_time() -> None:
    live = fleet()
    assert live.apply_status("car", UnitStatus.DISPATCHED, "C1", NOW)
    assert not live.apply_status("car", UnitStatus.AVAILABLE, None, NOW - timedelta(seconds=5))
    assert live.units["car"].status is UnitStatus.DISPATCHED


def test_nearest_filters_by_status_kind_platform_and_freshness_during_the_search() -> None:
    live = fleet()
    live.apply_position("car", Position(NOW, 27.2400, 111.4600))
    live.apply_position("moto", Position(NOW, 27.2450, 111.4600))
    live.apply_position("cmd", Position(NOW - timedelta(minutes=5), 27.2401, 111.4600))
    live.apply_status("car", UnitStatus.DISPATCHED, "C1", NOW)

    def ids(unit_filter: UnitFilter) -> list[str]:
        found = live.nearest(lat=27.24, lon=111.46, k=5, now=NOW, unit_filter=unit_filter, ranking=ByDistance())
        return [f.entry.unit_id for f in found]

    assert ids(UnitFilter()) == ["moto"]
    assert ids(UnitFilter(status=None)) == ["car", "moto"]
    assert ids(UnitFilter(status=None, max_age_s=600)) == ["car", "cmd", "moto"]
    assert ids(UnitFilter(status=None, kind=UnitKind.MOTORCYCLE)) == ["moto"]
    assert ids(UnitFilter(status=None, platform_id="P2")) == []


def test_ordering_by_eta_can_prefer_a_faster_unit_that_is_farther() -> None:
    live = fleet()
    live.apply_position("car", Position(NOW, 27.2400, 111.4600))
    live.apply_position("moto", Position(NOW, 27.2400, 111.4603))
    eta = CircuityEta(speeds_kmh={**CircuityEta().speeds_kmh, (UnitKind.MOTORCYCLE, ZoneClass.KEY_AREA): 90.0})
    found = live.nearest(
        lat=27.2400,
        lon=111.4598,
        k=2,
        now=NOW,
        unit_filter=UnitFilter(),
        ranking=EtaRanking(eta, EtaQuery((27.2400, 111.4598), NOW, ZoneClass.KEY_AREA)),
    )
    assert [f.entry.unit_id for f in found] == ["moto", "car"]


def test_the_fleet_size_chooses_the_cell_resolution() -> None:
    assert resolution_for(1_000) == 7
    assert resolution_for(100_000) == 8
    live = LiveMap()
    live.upsert_unit(unit_id="u", platform_id="p", kind=UnitKind.PATROL_CAR, callsign="1", terminal_id=None)
    live.apply_position("u", Position(NOW, 27.24, 111.46))
    live.reindex_for_fleet()
    [found] = live.nearest(lat=27.24, lon=111.46, k=1, now=NOW, unit_filter=UnitFilter(), ranking=ByDistance())
    assert found.entry.unit_id == "u"


def test_eta_is_circuity_times_distance_over_speed() -> None:
    eta = CircuityEta(circuity=1.3)
    speed = eta.speeds_kmh[(UnitKind.PATROL_CAR, ZoneClass.CENTRAL_URBAN)]
    central = EtaQuery((27.24, 111.46), NOW, ZoneClass.CENTRAL_URBAN)
    assert eta_s(eta, UnitKind.PATROL_CAR, (27.25, 111.46), central, 1000) == pytest.approx(1.3 * 1000 / (speed / 3.6))
    rural = EtaQuery((27.24, 111.46), NOW, ZoneClass.RURAL)
    for kind in UnitKind:
        assert eta.least_seconds_per_metre(rural) <= eta.seconds_per_metre(kind, (27.25, 111.46), rural)
        assert eta.rates_by_kind(rural)[kind] == eta.seconds_per_metre(kind, (27.25, 111.46), rural)


def test_an_eta_model_without_every_speed_is_refused() -> None:
    with pytest.raises(ValueError, match="no speed"):
        CircuityEta(speeds_kmh={(UnitKind.PATROL_CAR, ZoneClass.RURAL): 50.0})
    with pytest.raises(ValueError, match="circuity"):
        CircuityEta(circuity=0.9)


def test_a_point_takes_the_strictest_class_of_the_zones_containing_it_and_rural_outside_all() -> None:
    zones = ZoneMap(
        [
            ZoneDefinition("city", ZoneClass.OTHER_URBAN, square(111.0, 27.0, 1.0)),
            ZoneDefinition("centre", ZoneClass.CENTRAL_URBAN, square(111.4, 27.2, 0.2)),
            ZoneDefinition("square", ZoneClass.KEY_AREA, square(111.45, 27.23, 0.02)),
        ]
    )
    assert zones.classify(lat=27.24, lon=111.46) is ZoneClass.KEY_AREA
    assert zones.classify(lat=27.30, lon=111.50) is ZoneClass.CENTRAL_URBAN
    assert zones.classify(lat=27.90, lon=111.10) is ZoneClass.OTHER_URBAN
    assert zones.classify(lat=30.00, lon=115.00) is ZoneClass.RURAL
    assert ZoneMap().classify(lat=27.24, lon=111.46) is ZoneClass.RURAL
    assert [zones.target_s(c) for c in ZoneClass] == [60, 180, 300, 900]


def test_self_intersecting_zones_are_refused() -> None:
    bow_tie = {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}
    with pytest.raises(InvalidError, match="invalid polygon"):
        validate_geometry(bow_tie)
    validate_geometry(square(0, 0, 1))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), moves=st.integers(0, 600))
def test_after_any_churn_of_moves_statuses_and_departures_nearest_equals_brute_force(seed: int, moves: int) -> None:
    # Buckets keep coordinates packed beside their entries and swap the last one in on removal: every path that moves
    # an entry (same cell, a neighbouring cell's bucket, a cell new to the layer, a new status layer, a unit leaving
    # the registry) must leave the index exact and its bookkeeping whole.
    rng = random.Random(seed)
    live = LiveMap(resolution=9)
    ids = [f"u{i}" for i in range(60)]
    for unit_id in ids:
        live.upsert_unit(unit_id=unit_id, platform_id="P1", kind=UnitKind.PATROL_CAR, callsign="0", terminal_id=None)
    for step in range(moves):
        unit_id = rng.choice(ids)
        ts = NOW - timedelta(seconds=rng.choice([0, 0, 0, 300])) + timedelta(milliseconds=step)
        if rng.random() < 0.7:
            near = live.units[unit_id].position or Position(ts, 27.24, 111.47)
            lat, lon = near.lat + rng.uniform(-0.003, 0.003), near.lon + rng.uniform(-0.003, 0.003)
            live.apply_position(unit_id, Position(ts, lat, lon))
        else:
            live.apply_status(unit_id, rng.choice(list(UnitStatus)), None, ts)
    assert_each_unit_held_once_where_h3_puts_it(live)
    live.remove_units_not_in(ids[: rng.randrange(1, 61)])
    assert_each_unit_held_once_where_h3_puts_it(live)
    for _ in range(5):
        q_lat, q_lon = 27.24 + rng.uniform(-0.02, 0.02), 111.47 + rng.uniform(-0.02, 0.02)
        found = live.nearest(lat=q_lat, lon=q_lon, k=5, now=NOW, unit_filter=UnitFilter(), ranking=ByDistance())
        expected = sorted(
            great_circle_m(q_lat, q_lon, u.position.lat, u.position.lon)
            for u in live.units.values()
            if u.position is not None and u.status is UnitStatus.AVAILABLE and u.online(NOW, 120.0)
        )[:5]
        assert [f.distance_m for f in found] == pytest.approx(expected, abs=1e-6)
