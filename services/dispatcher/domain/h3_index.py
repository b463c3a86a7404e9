"""Exact k-nearest search over units bucketed by H3 cell.

The walk visits grid rings outward from the query's cell and stops only when no unit it has not seen can beat the
k-th best it holds. After every cell within grid distance r has been scanned, any unseen unit lies beyond ring r+1's
inner edge: a geodesic from the query to it must leave the scanned disk through some cell c of ring r+1, so its
distance is at least min over c of (angle(query, centre(c)) - circumradius(c)). That bound holds near pentagons and
across the antimeridian because it only uses adjacency and the triangle inequality; `tests/unit/test_h3_index.py`
checks it against brute force. Distances are angles on the unit sphere from chord lengths (well conditioned for
short distances), times the contract's Earth radius.

When the walk would visit more cells than there are entries (a query far from every unit), scanning every entry
directly is cheaper and still exact.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Collection, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

import h3.api.basic_int as h3i

from shared.geo import EARTH_RADIUS_M

_EPSILON_RAD = 1e-12
"""Slack on every lower bound so that floating-point rounding can never prune the true answer."""


def unit_vector(lat: float, lon: float) -> tuple[float, float, float]:
    phi = math.radians(lat)
    lam = math.radians(lon)
    cos_phi = math.cos(phi)
    return cos_phi * math.cos(lam), cos_phi * math.sin(lam), math.sin(phi)


def angle_between(a: tuple[float, float, float], b: tuple[float, float, float]) -> float:
    dx, dy, dz = a[0] - b[0], a[1] - b[1], a[2] - b[2]
    return 2.0 * math.asin(min(1.0, math.sqrt(dx * dx + dy * dy + dz * dz) / 2.0))


class Located(Protocol):
    """What the index needs of an entry: its unit vector."""

    @property
    def xyz(self) -> tuple[float, float, float]: ...


E = TypeVar("E", bound=Located)
E_contra = TypeVar("E_contra", contravariant=True)


@dataclass(frozen=True, slots=True)
class Found(Generic[E]):
    entry: E
    distance_m: float
    score: float


class Ranking(Protocol[E_contra]):
    """Orders candidates by distance times a per-entry weight (1 for plain distance, seconds per metre for ETA).

    `min_weight` must not exceed the weight of any entry: it turns a distance lower bound into a score lower bound.
    """

    def weight(self, entry: E_contra) -> float: ...

    @property
    def min_weight(self) -> float: ...


class ByDistance:
    min_weight = 1.0

    def weight(self, entry: object) -> float:
        return 1.0


@dataclass(frozen=True, slots=True)
class _CellShape:
    centre: tuple[float, float, float]
    circumradius: float


Layer = Hashable
"""Entries live in layers (the live map uses one per unit status) so a filtered search never sees the others."""


@dataclass
class H3Index(Generic[E]):
    """Entries bucketed by the H3 cell of their position at one resolution, in layers."""

    resolution: int
    layers: dict[Layer, dict[int, dict[str, E]]] = field(default_factory=dict)
    _sizes: dict[Layer, int] = field(default_factory=dict)
    _shapes: dict[int, _CellShape] = field(default_factory=dict)
    _rings: dict[tuple[int, int], tuple[list[int], list[_CellShape]]] = field(default_factory=dict)

    _CACHE_LIMIT = 400_000

    def cell_of(self, lat: float, lon: float) -> int:
        cell: int = h3i.latlng_to_cell(lat, lon, self.resolution)
        return cell

    def add(self, key: str, entry: E, cell: int, layer: Layer = None) -> None:
        cells = self.layers.setdefault(layer, {})
        bucket = cells.get(cell)
        if bucket is None:
            bucket = cells[cell] = {}
            self.warm(cell)
        if key not in bucket:
            self._sizes[layer] = self._sizes.get(layer, 0) + 1
        bucket[key] = entry

    def remove(self, key: str, cell: int, layer: Layer = None) -> None:
        cells = self.layers.get(layer)
        if cells is None:
            return
        bucket = cells.get(cell)
        if bucket is not None and bucket.pop(key, None) is not None:
            self._sizes[layer] -= 1
            if not bucket:
                del cells[cell]

    def __len__(self) -> int:
        return sum(self._sizes.values())

    def warm(self, cell: int, rings: int = 3) -> None:
        """Precompute the geometry a search from this cell will need, off the query path."""
        for r in range(1, rings + 1):
            self._ring(cell, r)

    def nearest(
        self,
        lat: float,
        lon: float,
        k: int,
        *,
        accept: Callable[[E], bool] | None = None,
        ranking: Ranking[E],
        layers: Collection[Layer] | None = None,
    ) -> list[Found[E]]:
        """The k best entries of `layers` (all by default) passing `accept`, best first; exact, not approximate."""
        chosen = [self.layers[name] for name in (self.layers if layers is None else layers) if name in self.layers]
        population = sum(self._sizes.get(name, 0) for name in (self.layers if layers is None else layers))
        if k <= 0 or population == 0:
            return []
        query = unit_vector(lat, lon)
        origin = self.cell_of(lat, lon)
        plain = isinstance(ranking, ByDistance)
        # Max-heap (negated keys) of the k best so far. Plain distance ranks by squared chord, which orders exactly
        # like the great-circle angle and needs no trigonometry per entry.
        heap: list[tuple[float, int, E]] = []
        visited = 0
        ring, ring_shapes = [origin], [self._shape(origin)]
        r = 0
        while True:
            for cell, shape in zip(ring, ring_shapes, strict=True):
                buckets = [bucket for cells in chosen if (bucket := cells.get(cell))]
                # A whole cell is skipped when even its nearest point cannot beat the k-th best held.
                if not buckets or (len(heap) == k and self._beyond(query, (shape,), -heap[0][0], plain, ranking)):
                    continue
                for bucket in buckets:
                    self._scan(bucket.values(), query, k, accept, ranking, plain, heap)
            visited += len(ring)
            next_ring, shapes = self._ring(origin, r + 1)
            if len(heap) == k and self._beyond(query, shapes, -heap[0][0], plain, ranking):
                break
            if visited + len(next_ring) > population:
                heap = []
                everything = (e for cells in chosen for bucket in cells.values() for e in bucket.values())
                self._scan(everything, query, k, accept, ranking, plain, heap)
                break
            ring, ring_shapes = next_ring, shapes
            r += 1
        heap.sort(key=lambda t: (-t[0], -t[1]))
        found = []
        for _, _, entry in heap:
            distance_m = angle_between(query, entry.xyz) * EARTH_RADIUS_M
            found.append(Found(entry, distance_m, distance_m * ranking.weight(entry)))
        return found

    @staticmethod
    def _scan(
        entries: Iterable[E],
        query: tuple[float, float, float],
        k: int,
        accept: Callable[[E], bool] | None,
        ranking: Ranking[E],
        plain: bool,
        heap: list[tuple[float, int, E]],
    ) -> None:
        qx, qy, qz = query
        asin, sqrt = math.asin, math.sqrt
        push, replace = heapq.heappush, heapq.heapreplace
        for entry in entries:
            if accept is not None and not accept(entry):
                continue
            x, y, z = entry.xyz
            dx, dy, dz = x - qx, y - qy, z - qz
            key = dx * dx + dy * dy + dz * dz
            if not plain:
                key = 2.0 * asin(min(1.0, sqrt(key) / 2.0)) * ranking.weight(entry)
            if len(heap) < k:
                push(heap, (-key, id(entry), entry))
            elif key < -heap[0][0]:
                replace(heap, (-key, id(entry), entry))

    @staticmethod
    def _beyond(
        query: tuple[float, float, float],
        shapes: Sequence[_CellShape],
        worst: float,
        plain: bool,
        ranking: Ranking[E],
    ) -> bool:
        """True when nothing in or past these ring cells can score below `worst`, the k-th best held."""
        worst_angle = 2.0 * math.asin(min(1.0, math.sqrt(worst) / 2.0)) if plain else worst / ranking.min_weight
        worst_angle += _EPSILON_RAD
        qx, qy, qz = query
        asin, sqrt = math.asin, math.sqrt
        for shape in shapes:
            cx, cy, cz = shape.centre
            dx, dy, dz = cx - qx, cy - qy, cz - qz
            if 2.0 * asin(min(1.0, sqrt(dx * dx + dy * dy + dz * dz) / 2.0)) - shape.circumradius < worst_angle:
                return False
        return True

    def _ring(self, origin: int, r: int) -> tuple[list[int], list[_CellShape]]:
        key = (origin, r)
        ring = self._rings.get(key)
        if ring is None:
            if len(self._rings) >= self._CACHE_LIMIT:
                self._rings.clear()
            cells = list(h3i.grid_ring(origin, r))
            ring = self._rings[key] = (cells, [self._shape(cell) for cell in cells])
        return ring

    def _shape(self, cell: int) -> _CellShape:
        shape = self._shapes.get(cell)
        if shape is None:
            if len(self._shapes) >= self._CACHE_LIMIT:
                self._shapes.clear()
            centre = unit_vector(*h3i.cell_to_latlng(cell))
            radius = max(angle_between(centre, unit_vector(lat, lon)) for lat, lon in h3i.cell_to_boundary(cell))
            shape = self._shapes[cell] = _CellShape(centre, radius)
        return shape
