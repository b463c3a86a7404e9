"""Move-up advice on hand-made cases with one obvious answer."""

from __future__ import annotations

from datetime import UTC, datetime

import h3.api.basic_int as h3i

from services.dispatcher.domain.eta import CircuityEta, LatLon
from services.dispatcher.domain.move_up import Demand, Idle, advise
from shared.contract.registry import UnitKind, ZoneClass

AT = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
MODEL = CircuityEta()


def cell_at(lat: float, lon: float, zone_class: ZoneClass, target_s: int) -> Demand:
    cell = h3i.latlng_to_cell(lat, lon, 8)
    return Demand(cell, h3i.cell_to_latlng(cell), zone_class, target_s)


KEY = cell_at(27.24, 111.47, ZoneClass.KEY_AREA, 60)
CENTRAL = cell_at(27.27, 111.47, ZoneClass.CENTRAL_URBAN, 180)
"""3.3 km north of the key cell: no post covers both."""


def unit(unit_id: str, at: LatLon) -> Idle:
    return Idle(unit_id, UnitKind.MOTORCYCLE, at)


def test_the_unit_that_leaves_nothing_uncovered_moves_to_the_uncovered_key_area() -> None:
    guard = unit("guard", CENTRAL.centre)
    spare = unit("spare", (27.225, 111.47))
    advice = advise([guard, spare], [KEY, CENTRAL], MODEL, AT)
    assert advice.coverage == {ZoneClass.KEY_AREA: 0.0, ZoneClass.CENTRAL_URBAN: 1.0}
    [move] = advice.moves
    assert (move.unit_id, move.post, move.post_cell, move.gain_cells) == ("spare", KEY.centre, KEY.cell, 1)
    assert move.origin == spare.position
    assert move.travel_s > 60


def test_the_nearer_of_two_equal_candidates_is_sent() -> None:
    near, far = unit("near", (27.23, 111.47)), unit("far", (27.225, 111.47))
    [move] = advise([far, near, unit("guard", CENTRAL.centre)], [KEY, CENTRAL], MODEL, AT).moves
    assert move.unit_id == "near"


def test_no_advice_when_coverage_is_at_the_level_or_no_move_gains() -> None:
    guard = unit("guard", CENTRAL.centre)
    assert advise([guard], [KEY, CENTRAL], MODEL, AT).moves == [], "the only unit would leave the central city bare"
    other_key = cell_at(27.24, 111.53, ZoneClass.KEY_AREA, 60)
    half = [guard, unit("keeper", KEY.centre), unit("spare", (27.225, 111.53))]
    assert advise(half, [KEY, other_key, CENTRAL], MODEL, AT, level=0.5).moves == [], "half the key cells: the level"
    [move] = advise(half, [KEY, other_key, CENTRAL], MODEL, AT, level=0.8).moves
    assert (move.unit_id, move.post_cell) == ("spare", other_key.cell)


def test_no_unit_is_moved_further_than_the_longest_drive_nor_one_that_may_not_move() -> None:
    far = unit("far", (27.20, 111.47))
    assert advise([far, unit("guard", CENTRAL.centre)], [KEY, CENTRAL], MODEL, AT).moves == [], "4.4 km: 690 s"
    [move] = advise([far, unit("guard", CENTRAL.centre)], [KEY, CENTRAL], MODEL, AT, max_travel_s=900).moves
    assert move.unit_id == "far"
    kept = Idle("kept", UnitKind.MOTORCYCLE, (27.225, 111.47), movable=False)
    assert advise([kept, unit("guard", CENTRAL.centre)], [KEY, CENTRAL], MODEL, AT).moves == []


def test_each_unit_moves_once_and_no_more_than_max_moves_are_advised() -> None:
    keys = [cell_at(27.24, 111.47 + 0.03 * i, ZoneClass.KEY_AREA, 60) for i in range(4)]
    spares = [unit(f"spare-{i}", (27.225, 111.47 + 0.03 * i)) for i in range(4)]
    moves = advise(spares, keys, MODEL, AT, max_moves=3).moves
    assert len(moves) == 3
    assert len({m.unit_id for m in moves}) == 3
    assert len({m.post_cell for m in moves}) == 3
