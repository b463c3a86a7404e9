"""Coverage maths on small grids: cells of a zone, reached within the target, per zone and per class."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TypeVar

import h3.api.basic_int as h3i
import pytest

from services.dispatcher import service as service_module
from services.dispatcher.domain.coverage import COVERAGE_RESOLUTION, CoverageArea, coverage_areas, measure
from services.dispatcher.domain.eta import CircuityEta
from services.dispatcher.domain.zones import ZoneDefinition
from services.dispatcher.service import CoverageWatch, DispatchService, MoveUpRules, NewCall
from shared.contract.registry import UnitKind, Zone, ZoneClass
from shared.contract.schemas import UnitStatus
from shared.geo import great_circle_m
from tests.unit.fakes import FakeDispatchStore
from tests.unit.test_dispatch_service import T0, Clock, ping, registry, started

HUB = h3i.latlng_to_cell(27.24, 111.47, COVERAGE_RESOLUTION)
T = TypeVar("T")


def around(cell: int, rings: int) -> dict[str, object]:
    """GeoJSON of the cells within `rings` of `cell`: a zone that is exactly those cells."""
    return dict(h3i.cells_to_geo(h3i.grid_disk(cell, rings)))


def test_a_zone_is_the_cells_whose_centres_it_holds_and_a_tiny_zone_still_has_one() -> None:
    lat, lon = h3i.cell_to_latlng(HUB)
    d = 0.001
    square = {"type": "Polygon", "coordinates": [[[lon - d, lat - d], [lon + d, lat - d], [lon + d, lat + d],
              [lon - d, lat + d], [lon - d, lat - d]]]}  # fmt: skip
    [big, tiny] = coverage_areas(
        [
            ZoneDefinition("big", ZoneClass.CENTRAL_URBAN, around(HUB, 1)),
            ZoneDefinition("tiny", ZoneClass.KEY_AREA, square),
        ]
    )
    assert big.cells == frozenset(h3i.grid_disk(HUB, 1))
    assert tiny.cells == frozenset({HUB})
    assert (big.target_s, tiny.target_s) == (180, 60)


def test_a_cell_is_covered_when_the_best_eta_to_it_is_within_the_target_and_classes_count_cells_once() -> None:
    """One unit at the hub, driving 30 m/s: cells within 1,800 m are reached in a key area's minute, within 5,400 m
    in the central city's three."""
    hub = h3i.cell_to_latlng(HUB)
    key_1 = CoverageArea("key-1", ZoneClass.KEY_AREA, frozenset(h3i.grid_disk(HUB, 2)))
    key_2 = CoverageArea("key-2", ZoneClass.KEY_AREA, frozenset(h3i.grid_ring(HUB, 2)))
    central = CoverageArea("central", ZoneClass.CENTRAL_URBAN, frozenset(h3i.grid_disk(HUB, 4)))
    far = h3i.grid_ring(HUB, 4)[0]

    def best_eta_s(cell: int) -> float | None:
        return None if cell == far else great_circle_m(*hub, *h3i.cell_to_latlng(cell)) / 30.0

    def reached(cells: frozenset[int], target_s: int) -> int:
        return sum(1 for c in cells if c != far and great_circle_m(*hub, *h3i.cell_to_latlng(c)) / 30 <= target_s)

    snapshot = measure([key_1, key_2, central], best_eta_s, T0)
    assert snapshot.at == T0
    zone_class, key_1_figure = snapshot.zones["key-1"]
    assert zone_class is ZoneClass.KEY_AREA
    assert (key_1_figure.cells, key_1_figure.covered) == (19, reached(key_1.cells, 60))
    assert 0 < key_1_figure.covered < 19
    assert snapshot.classes[ZoneClass.KEY_AREA].cells == 19, "key-2's cells are key-1's: counted once"
    central_figure = snapshot.classes[ZoneClass.CENTRAL_URBAN]
    assert (central_figure.cells, central_figure.covered) == (61, reached(central.cells, 180))
    assert central_figure.covered == 60, "every cell but the one nobody can be sent to"
    assert central_figure.share == 60 / 61
    assert set(snapshot.classes) == {ZoneClass.KEY_AREA, ZoneClass.CENTRAL_URBAN}


async def test_the_service_measures_by_its_eta_model_counts_only_available_units_and_keeps_samples() -> None:
    hub = h3i.cell_to_latlng(HUB)
    store = FakeDispatchStore()
    zone = Zone.model_validate({"id": "Z-HUB", "class": "key_area", "geometry": around(HUB, 1)})
    await store.import_registry(registry().model_copy(update={"zones": [zone]}))
    clock = Clock()
    service = await started(store, clock)
    lat, lon = hub
    await service.on_position(ping("U1", lat, lon, T0 - timedelta(seconds=5)))
    reach_m = 60 / CircuityEta().rate(UnitKind.PATROL_CAR, ZoneClass.KEY_AREA)
    expected = sum(1 for c in h3i.grid_disk(HUB, 1) if great_circle_m(*hub, *h3i.cell_to_latlng(c)) <= reach_m)
    _, figure = service.measure_coverage().zones["Z-HUB"]
    assert (figure.cells, figure.covered) == (7, expected)
    assert expected >= 1

    await service.set_status("U1", UnitStatus.OFF_DUTY, call_id=None, ts=None)
    assert service.measure_coverage().classes[ZoneClass.KEY_AREA].covered == 0
    assert service.coverage().classes[ZoneClass.KEY_AREA].covered == 0

    follow = asyncio.create_task(service.follow_coverage(CoverageWatch(every_s=0.01, sample_s=60)))
    await asyncio.sleep(0.05)
    clock.now = T0 + timedelta(seconds=61)
    await asyncio.sleep(0.05)
    follow.cancel()
    assert sorted(store.coverage_samples) == [T0, T0 + timedelta(seconds=60)], "one sample per instant of the grid"
    [hour] = await service.coverage_history(since=T0 - timedelta(hours=1), until=T0 + timedelta(hours=1))
    assert (hour.zone_class, hour.samples, hour.mean_share) == (ZoneClass.KEY_AREA, 2, 0.0)


async def turns_taken_meanwhile(work: Callable[[], Awaitable[T]]) -> tuple[int, T]:
    """How many turns a busy task got while `work` ran, and what `work` gave."""
    turns = 0

    async def other_work() -> None:
        nonlocal turns
        while True:
            await asyncio.sleep(0)
            turns += 1

    other = asyncio.create_task(other_work())
    await asyncio.sleep(0)  # it starts
    counted = turns
    outcome = await work()
    meanwhile = turns - counted
    other.cancel()
    return meanwhile, outcome


async def service_watching_37_cells(move_up: MoveUpRules | None = None) -> DispatchService:
    store = FakeDispatchStore()
    zone = Zone.model_validate({"id": "Z-HUB", "class": "key_area", "geometry": around(HUB, 3)})
    await store.import_registry(registry().model_copy(update={"zones": [zone]}))
    service = await started(store, Clock(), move_up=move_up)
    lat, lon = h3i.cell_to_latlng(HUB)
    await service.on_position(ping("U1", lat, lon, T0 - timedelta(seconds=5)))
    await service.on_position(ping("U2", lat + 0.03, lon, T0 - timedelta(seconds=5)))
    return service


async def test_the_scheduled_measurement_lets_the_event_loop_go_between_slices_and_measures_the_same(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Measured in slices (here one cell each), other work runs during a measurement; measured in one piece (a
    slice longer than the whole), none does. Either way the figures are `measure_coverage`'s."""
    service = await service_watching_37_cells()
    whole = service.measure_coverage()
    monkeypatch.setattr(service_module, "_SLICE_S", 0.0)
    sliced, snapshot = await turns_taken_meanwhile(service.measure_coverage_in_slices)
    assert sliced >= 36, "37 cells: the loop is let go after each"
    assert snapshot == whole
    monkeypatch.setattr(service_module, "_SLICE_S", 3600.0)
    in_one_piece, snapshot = await turns_taken_meanwhile(service.measure_coverage_in_slices)
    assert (in_one_piece, snapshot) == (0, whole)


async def test_move_up_advice_lets_the_event_loop_go_between_its_searches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service_module, "_SLICE_S", 3600.0)
    service = await service_watching_37_cells(MoveUpRules(1.0))
    in_one_piece, advice = await turns_taken_meanwhile(service.advise_move_up)
    assert in_one_piece == 0
    monkeypatch.setattr(service_module, "_SLICE_S", 0.0)
    service = await service_watching_37_cells(MoveUpRules(1.0))
    sliced, advice_in_slices = await turns_taken_meanwhile(service.advise_move_up)
    assert sliced >= 37, "a search per watched cell: the loop is let go before each"
    assert [(a.unit_id, a.to_cell) for a in advice_in_slices] == [(a.unit_id, a.to_cell) for a in advice]


async def test_a_dispatch_that_leaves_a_key_area_bare_brings_move_up_advice_recorded_for_kafka() -> None:
    """Two key areas: U1 alone covers the hub's, U2 and U3 both cover the one 1.5 km north. U1 is sent away: U2,
    nearer than U3, should move up to the hub, and the north stays covered by U3."""
    hub = h3i.cell_to_latlng(HUB)
    north = (hub[0] + 1_500 / 111_195, hub[1])
    north_cell = h3i.latlng_to_cell(*north, COVERAGE_RESOLUTION)
    store = FakeDispatchStore()
    zones = [
        Zone.model_validate({"id": "Z-HUB", "class": "key_area", "geometry": around(HUB, 0)}),
        Zone.model_validate({"id": "Z-NORTH", "class": "key_area", "geometry": around(north_cell, 0)}),
    ]
    await store.import_registry(registry().model_copy(update={"zones": zones}))
    clock = Clock()
    service = await started(store, clock, move_up=MoveUpRules(level=1.0))
    seen = T0 - timedelta(seconds=5)
    await service.on_position(ping("U1", hub[0], hub[1], seen))
    north_centre = h3i.cell_to_latlng(north_cell)
    await service.on_position(ping("U2", north_centre[0], north_centre[1], seen))
    await service.on_position(ping("U3", north_centre[0] + 0.0008, north_centre[1], seen))
    assert await service.advise_move_up() == [], "covered: nothing to advise"

    follow = asyncio.create_task(service.follow_dispatches())
    created = await service.create_call(NewCall(lat=hub[0] + 0.2, lon=hub[1], category="theft", priority=1))
    await service.assign(created.call.call_id, "U1", ts=None)
    for _ in range(50):
        if store.advice_:
            break
        await asyncio.sleep(0.01)
    follow.cancel()
    [advice] = store.advice_
    assert (advice.unit_id, advice.to_cell, advice.call_id) == ("U2", h3i.int_to_str(HUB), created.call.call_id)
    assert (advice.zone_class, advice.gain_cells, advice.coverage) == ("key_area", 1, {"key_area": 0.5})
    assert (advice.to_lat, advice.to_lon) == hub
    assert advice.travel_s > 60
    assert await service.advice() == [advice]
    assert await service.advise_move_up() == [], "the standing advice is not given again"
    await service.set_status("U2", UnitStatus.OFF_DUTY, call_id=None, ts=None)
    assert await service.advice() == [], "advice for a unit no longer available is not shown"
