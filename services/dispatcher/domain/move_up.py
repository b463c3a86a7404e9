"""Move-up advice: which idle unit should move where so that more of the key areas and the central city is
reachable within the promise again. Greedy maximum coverage (Church and ReVelle's problem, solved the usual greedy
way): each round takes the move that brings the most cells back within their target, net of the cells only that
unit was covering, until no move gains or `max_moves` are advised. Advice only: nothing here moves a unit.

Posts are the centres of the cells not covered now (a unit parked there covers at least that cell); reach is judged
by the ETA model in force, from the post to each cell's centre.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import h3.api.basic_int as h3i

from services.dispatcher.domain.coverage import CoverageArea
from services.dispatcher.domain.eta import EtaModel, EtaQuery, LatLon, eta_s
from shared.contract.registry import UnitKind, ZoneClass
from shared.geo import great_circle_m, north_south_m

MOVE_UP_CLASSES = (ZoneClass.KEY_AREA, ZoneClass.CENTRAL_URBAN)
"""The classes whose coverage move-up watches: the 1- and 3-minute promises."""


@dataclass(frozen=True, slots=True)
class Idle:
    """An available unit that could move."""

    unit_id: str
    kind: UnitKind
    position: LatLon
    movable: bool = True
    """False for a unit that counts as cover but is not to be moved. The dispatcher and `kuaijing compare` move
    only units already in the key areas or the central city: pulling units in from the outer districts and the
    countryside left those bare (measured with `kuaijing compare`: rural calls within target fell from 83% to 69%)."""


@dataclass(frozen=True, slots=True)
class Demand:
    """A cell whose coverage matters, with the target of its class."""

    cell: int
    centre: LatLon
    zone_class: ZoneClass
    target_s: int


@dataclass(frozen=True, slots=True)
class Move:
    unit_id: str
    kind: UnitKind
    origin: LatLon
    post: LatLon
    post_cell: int
    zone_class: ZoneClass
    """The class of the post's cell."""
    gain_cells: int
    """Cells within their target after the move that were not before (net of those the unit leaves uncovered)."""
    travel_s: float
    """The ETA from where the unit is to the post."""


@dataclass(frozen=True, slots=True)
class Advice:
    coverage: dict[ZoneClass, float]
    """Each class's share of its demand cells covered before the moves."""
    moves: list[Move]


def advise(
    idle: Sequence[Idle],
    demand: Sequence[Demand],
    model: EtaModel,
    at: datetime,
    *,
    level: float = 1.0,
    max_moves: int = 3,
    max_travel_s: float = 600.0,
) -> Advice:
    """Moves for when some class of `demand` has less than `level` of its cells covered (none otherwise).

    `idle` may be only the units that could matter: every unit that reaches some demand cell within its target
    must be in it (the k >= 2 best by ETA of every demand cell are), so that cells count as covered, and a unit as
    the only one covering a cell, exactly as with the whole fleet. No unit is moved further than `max_travel_s`
    away: a township's car is not pulled into the city, leaving its own area bare."""

    # Every unit is tried against every demand cell: each cell's query and least rate are worked out once, and a
    # unit too far north or south is ruled out before its distance is worked out.
    queries = {d.cell: EtaQuery(d.centre, at, d.zone_class) for d in demand}
    least = {d.cell: model.least_seconds_per_metre(queries[d.cell]) for d in demand}

    def reaches(kind: UnitKind, origin: LatLon, cell: Demand) -> bool:
        rate = least[cell.cell]
        if north_south_m(origin[0], cell.centre[0]) * rate > cell.target_s:
            return False
        distance = great_circle_m(*origin, *cell.centre)
        if distance * rate > cell.target_s:
            return False
        return eta_s(model, kind, origin, queries[cell.cell], distance) <= cell.target_s

    reach = {u.unit_id: {d.cell for d in demand if reaches(u.kind, u.position, d)} for u in idle}
    covering = {d.cell: sum(1 for u in idle if d.cell in reach[u.unit_id]) for d in demand}
    coverage = class_shares(demand, covering)
    if all(share >= level for share in coverage.values()):
        return Advice(coverage, [])
    post_reach: dict[tuple[int, UnitKind], set[int]] = {}

    def from_post(post: Demand, kind: UnitKind) -> set[int]:
        key = (post.cell, kind)
        if key not in post_reach:
            post_reach[key] = {d.cell for d in demand if reaches(kind, post.centre, d)}
        return post_reach[key]

    moves: list[Move] = []
    moved: set[str] = set()
    while len(moves) < max_moves:
        uncovered = {cell for cell, n in covering.items() if n == 0}
        posts = [d for d in demand if d.cell in uncovered]
        best: tuple[int, float, Idle, Demand] | None = None
        for unit in idle:
            if unit.unit_id in moved or not unit.movable:
                continue
            alone = {c for c in reach[unit.unit_id] if covering[c] == 1}
            for post in posts:
                there = from_post(post, unit.kind)
                gain = len(there & uncovered) - len(alone - there)
                if gain <= 0 or (best is not None and gain < best[0]):
                    continue
                travel = eta_s(
                    model,
                    unit.kind,
                    unit.position,
                    EtaQuery(post.centre, at, post.zone_class),
                    great_circle_m(*unit.position, *post.centre),
                )
                if travel > max_travel_s:
                    continue
                if best is None or (gain, -travel) > (best[0], -best[1]):
                    best = (gain, travel, unit, post)
        if best is None:
            break
        gain, travel, unit, post = best
        for cell in reach[unit.unit_id]:
            covering[cell] -= 1
        reach[unit.unit_id] = from_post(post, unit.kind)
        for cell in reach[unit.unit_id]:
            covering[cell] += 1
        moved.add(unit.unit_id)
        moves.append(
            Move(unit.unit_id, unit.kind, unit.position, post.centre, post.cell, post.zone_class, gain, travel)
        )
    return Advice(coverage, moves)


def class_shares(demand: Sequence[Demand], covering: dict[int, int]) -> dict[ZoneClass, float]:
    """Each class's share of its cells covered by at least one unit."""
    cells: dict[ZoneClass, list[bool]] = {}
    for d in demand:
        cells.setdefault(d.zone_class, []).append(covering[d.cell] > 0)
    return {zone_class: sum(flags) / len(flags) for zone_class, flags in cells.items()}


def demand_of(areas: Sequence[CoverageArea]) -> list[Demand]:
    """The cells of the key areas and the central city (of the zones' coverage areas), each with its class's
    target."""
    demand: dict[int, Demand] = {}
    for area in areas:
        if area.zone_class in MOVE_UP_CLASSES:
            for cell in area.cells:
                held = demand.get(cell)
                if held is None or area.target_s < held.target_s:
                    demand[cell] = Demand(cell, h3i.cell_to_latlng(cell), area.zone_class, area.target_s)
    return list(demand.values())
