"""Live coverage of the 1-3-5 promise: the share of each zone's area that an available unit can reach in time.

A zone's area is its H3 cells (resolution 8, about 0.7 km² each: those whose centres lie in the polygon). A cell is
covered when the best ETA of any available, fresh unit to its centre, by the ETA model in force, is within the
target: the zone's own target for the zone's figure, the class's for the class's figure (the cells of every zone of
the class, each counted once). The best ETA per cell comes from the exact nearest-by-ETA search, so a share is exact
for the model, not sampled.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

import h3.api.basic_int as h3i
from shapely.geometry import shape

from services.dispatcher.domain.zones import STRICTNESS, ZoneDefinition
from shared.contract.registry import ZONE_TARGET_S, ZoneClass

COVERAGE_RESOLUTION = 8


@dataclass(frozen=True, slots=True)
class CoverageArea:
    zone_id: str
    zone_class: ZoneClass
    cells: frozenset[int]

    @property
    def target_s(self) -> int:
        return ZONE_TARGET_S[self.zone_class]


def coverage_areas(zones: Iterable[ZoneDefinition], resolution: int = COVERAGE_RESOLUTION) -> list[CoverageArea]:
    """Each zone's cells; a zone smaller than a cell still has the one cell holding its centroid."""
    areas = []
    for zone in zones:
        cells = frozenset(h3i.geo_to_cells(dict(zone.geometry), resolution))
        if not cells:
            cells = frozenset({h3i.latlng_to_cell(*_centroid(zone.geometry), resolution)})
        areas.append(CoverageArea(zone.zone_id, zone.zone_class, cells))
    return areas


def _centroid(geometry: object) -> tuple[float, float]:
    point = shape(geometry).centroid
    return point.y, point.x


@dataclass(frozen=True, slots=True)
class Coverage:
    """`covered` of `cells` reachable within `target_s`."""

    cells: int
    covered: int
    target_s: int

    @property
    def share(self) -> float:
        return self.covered / self.cells if self.cells else 0.0


@dataclass(frozen=True, slots=True)
class CoverageSnapshot:
    at: datetime
    zones: dict[str, tuple[ZoneClass, Coverage]]
    classes: dict[ZoneClass, Coverage]


def measure(areas: Iterable[CoverageArea], best_eta_s: Callable[[int], float | None], at: datetime) -> CoverageSnapshot:
    """Coverage per zone and per class, asking `best_eta_s` once per cell (None: no unit can be sent there)."""
    areas = list(areas)
    return summarise(areas, {cell: best_eta_s(cell) for cell in cells_of(areas)}, at)


def cells_of(areas: Iterable[CoverageArea]) -> list[int]:
    """Every cell of the areas once, in a stable order: what `summarise` needs an ETA for."""
    return list(dict.fromkeys(cell for area in areas for cell in area.cells))


def summarise(areas: Iterable[CoverageArea], etas: dict[int, float | None], at: datetime) -> CoverageSnapshot:
    """`measure` from the best ETA of each of `cells_of(areas)`, found by the caller (in slices, by the service)."""
    areas = list(areas)

    def coverage(cells: Iterable[int], target_s: int) -> Coverage:
        cells = set(cells)
        reached = sum(1 for c in cells if (eta := etas[c]) is not None and eta <= target_s)
        return Coverage(len(cells), reached, target_s)

    zones = {a.zone_id: (a.zone_class, coverage(a.cells, a.target_s)) for a in areas}
    classes = {
        zone_class: coverage(
            (c for a in areas if a.zone_class is zone_class for c in a.cells), ZONE_TARGET_S[zone_class]
        )
        for zone_class in STRICTNESS
        if any(a.zone_class is zone_class for a in areas)
    }
    return CoverageSnapshot(at, zones, classes)


@dataclass(frozen=True, slots=True)
class CoverageHour:
    """A class's coverage over one hour of samples: what a report of last night shows hour by hour."""

    hour: datetime
    zone_class: ZoneClass
    samples: int
    mean_share: float
    min_share: float
