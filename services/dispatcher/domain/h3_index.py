"""Exact k-nearest search over units bucketed by H3 cell.

The walk visits grid rings outward from the query's cell and stops only when no unit it has not seen can beat the
k-th best it holds. After every cell within grid distance r has been scanned, any unseen unit lies beyond ring r+1's
inner edge: a geodesic from the query to it must leave the scanned disk through some cell c of ring r+1, so its
distance is at least min over c of (angle(query, centre(c)) - circumradius(c)). That bound holds near pentagons and
across the antimeridian because it only uses adjacency and the triangle inequality; `tests/unit/test_h3_index.py`
checks it against brute force. Distances are angles on the unit sphere from chord lengths (well conditioned for
short distances), times the contract's Earth radius.

The same per-cell bound skips an occupied cell that cannot beat the k-th best; when every cell of a ring passes it
the walk stops; a whole ring is first tried with one cheaper, looser bound. When the walk would visit more cells
than there are entries (a query far from every unit), scanning every entry directly is cheaper and still exact.
The layout is for speed in CPython: half of a walk's time was cache misses on scattered objects, hence the packed
arrays of `Bucket` and `_Ring`; the loops over a ring's cells and a bucket's entries are C (`_h3_walk.c`), which
reads those arrays in place (the figures are in the README, from `bench/dispatcher.py`).
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable, Collection, Hashable
from dataclasses import dataclass, field
from typing import Any, Generic, NamedTuple, Protocol, TypeVar

import h3.api.basic_int as h3i

from services.dispatcher.domain import _index_update
from services.dispatcher.domain._h3_walk import scan as scan_bucket
from services.dispatcher.domain._h3_walk import walk_ring
from shared.geo import EARTH_RADIUS_M

_EPSILON_RAD = 1e-12
_EPSILON_COS = 1e-14
"""Slack on every lower bound (as an angle, and on its cosine) so that rounding can never prune the true answer."""
_MAX_PRUNING_ANGLE = 2.5
"""Beyond this worst angle plus a cell's circumradius the cosine test stops being monotonic, so nothing is pruned."""


def unit_vector(lat: float, lon: float) -> tuple[float, float, float]:
    phi = math.radians(lat)
    lam = math.radians(lon)
    cos_phi = math.cos(phi)
    return cos_phi * math.cos(lam), cos_phi * math.sin(lam), math.sin(phi)


def angle_between(a: tuple[float, float, float], b: tuple[float, float, float]) -> float:
    dx, dy, dz = a[0] - b[0], a[1] - b[1], a[2] - b[2]
    return 2.0 * math.asin(min(1.0, math.sqrt(dx * dx + dy * dy + dz * dz) / 2.0))


class Located(Protocol):
    """What the index needs of an entry: its unit vector and when that position was taken (seconds since the epoch).
    The index keeps on the entry where it holds it, the bucket and the slot there (None and -1 while it holds it
    nowhere), so that an update can refresh the entry's packed coordinates without looking either up: at 100,000
    units each lookup is a few cache misses (`_index_update.c`). An entry is in one bucket at a time, so buckets
    keep no keys: the index is given the entry itself."""

    bucket: Bucket[Any] | None
    slot: int

    @property
    def xyz(self) -> tuple[float, float, float]: ...

    @property
    def position_epoch(self) -> float: ...


E = TypeVar("E", bound=Located)
E_contra = TypeVar("E_contra", contravariant=True)


class Found(NamedTuple, Generic[E]):
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
class _Ring:
    """The cells at one grid distance from an origin, with their geometry for the pruning test `_Search.beyond`.

    `geometry` holds five numbers per cell (centre x, y, z, cosine and sine of the circumradius) in one contiguous
    array: a walk reads a few dozen cells per query, and scattered float objects would cost a cache miss each.
    """

    cells: tuple[int, ...]
    geometry: array[float]
    inner: float
    """The least angle from the origin's centre to any point of the ring: with the query's own angle from that centre
    subtracted, a bound for the whole ring at the price of one comparison."""


class Bucket(Generic[E]):
    """The entries of one cell, with their unit vectors and position times packed in one array beside them.

    A scan reads four numbers per entry from contiguous memory and touches an entry only when it could make the
    answer; boxed floats scattered over the heap would cost a cache miss each, and misses are most of a walk's time.
    The array starts with the cell's sure disk, which an update reads before it writes the entry's numbers: one
    object and one buffer for both. The bucket knows its cell and its layer (`cells`), so an update that moves an
    entry to a neighbouring cell finds the bucket there without the index (`_index_update.c`, which also does `put`
    and `pop`).
    """

    __slots__ = ("cell", "cells", "coords", "entries")

    def __init__(self, cell: int, cells: dict[int, Bucket[E]], inside: tuple[float, float, float, float]) -> None:
        self.entries: list[E] = []
        """The entries by slot; each knows its own (`Located`)."""
        self.coords = array("d", inside)
        """The cell's sure disk (`H3Index.sure_disk`: centre x, y, z and the cosine of its radius), then x, y, z and
        the position epoch of the entry in each slot."""
        self.cell = cell
        self.cells = cells
        """The layer holding this bucket, by cell; an update drops the bucket from it once empty."""

    def __len__(self) -> int:
        return len(self.entries)

    def put(self, entry: E) -> bool:
        """Place or refresh the entry; True when it is new here."""
        return _index_update.put(self, entry, *entry.xyz, entry.position_epoch)

    def pop(self, entry: E) -> bool:
        """Take the entry out (the last one moves into its slot); True when it was here."""
        return _index_update.pop(self, entry)


Layer = Hashable
"""Entries live in layers (the live map uses one per unit status) so a filtered search never sees the others."""


@dataclass
class H3Index(Generic[E]):
    """Entries bucketed by the H3 cell of their position at one resolution, in layers."""

    resolution: int
    layers: dict[Layer, dict[int, Bucket[E]]] = field(default_factory=dict)
    _sizes: dict[Layer, int] = field(default_factory=dict)
    _shapes: dict[int, tuple[float, float, float, float, float]] = field(default_factory=dict)
    _rings: dict[int, list[_Ring]] = field(default_factory=dict)
    _sure_disks: dict[int, tuple[float, float, float, float]] = field(default_factory=dict)

    _CACHE_LIMIT = 400_000

    def cell_of(self, lat: float, lon: float) -> int:
        cell: int = h3i.latlng_to_cell(lat, lon, self.resolution)
        return cell

    def add(self, entry: E, cell: int, layer: Layer = None) -> None:
        """Place the entry in the cell, or refresh its coordinates there; call again whenever the position changes.
        An entry is in one bucket at a time: the caller takes one held elsewhere in this index out first (`remove`;
        `relocate` does both)."""
        cells = self.layers.setdefault(layer, {})
        bucket = cells.get(cell)
        if bucket is None:
            bucket = cells[cell] = Bucket(cell, cells, self.sure_disk(cell))
            self.warm(cell)
        if bucket.put(entry):
            self._sizes[layer] = self._sizes.get(layer, 0) + 1

    def relocate(self, entry: E, lat: float, lon: float, layer: Layer = None) -> int:
        """Place an entry whose position changed (its `xyz` gives the new one) and return its cell now: from H3, and out
        of the old cell if that changed. The live map's compiled update (`_index_update.c`) places a unit itself
        unless it is held nowhere yet or has moved to a cell its layer holds no bucket for."""
        new = self.cell_of(lat, lon)
        held = entry.bucket
        if held is not None and held.cell != new:
            self.remove(entry, layer)
        self.add(entry, new, layer)
        return new

    def remove(self, entry: E, layer: Layer = None) -> None:
        """Take the entry out of the layer; nothing happens if the layer does not hold it."""
        bucket = entry.bucket
        if bucket is None or bucket.cells is not self.layers.get(layer) or not bucket.pop(entry):
            return
        self._sizes[layer] -= 1
        if not bucket:
            del bucket.cells[bucket.cell]

    def __len__(self) -> int:
        return sum(self._sizes.values())

    def warm(self, cell: int, rings: int = 3) -> None:
        """Precompute, off the query path, the geometry a search from this cell or a neighbour will need.

        Calls come from anywhere near units, including cells that hold none; a cold origin costs a few hundred
        microseconds of H3 calls, which would otherwise land on the unlucky query.
        """
        for origin in h3i.grid_disk(cell, 1):
            planned = self._rings.get(origin)
            if planned is None or len(planned) <= rings:
                self._ring(origin, rings)

    def nearest(
        self,
        lat: float,
        lon: float,
        k: int,
        *,
        accept: Callable[[E], bool] | None = None,
        ranking: Ranking[E],
        layers: Collection[Layer] | None = None,
        fresh_since: float = -math.inf,
    ) -> list[Found[E]]:
        """The k best entries of `layers` (all by default) positioned at or after `fresh_since` and passing `accept`,
        best first; exact, not approximate."""
        chosen, population = [], 0
        for name in self.layers if layers is None else layers:
            cells = self.layers.get(name)
            if cells:
                chosen.append(cells)
                population += self._sizes[name]
        if k <= 0 or population == 0:
            return []
        query = unit_vector(lat, lon)
        origin = self.cell_of(lat, lon)
        search = _Search(query, k, fresh_since, accept, ranking)
        ring = self._ring(origin, 0)
        offset = angle_between(query, (ring.geometry[0], ring.geometry[1], ring.geometry[2]))
        visited = r = 0
        while True:
            if r > 0 and search.beyond_angle(ring.inner - offset):
                break
            # The walk stops after a ring whose every cell lies beyond the k-th best held; until one cell of this
            # ring is found not to, empty cells are tested too (`_h3_walk.c`, with `_Search._bound`'s test).
            every_cell_beyond = walk_ring(ring.cells, ring.geometry, chosen, r > 0, search.terms)
            if every_cell_beyond:
                break
            visited += len(ring.cells)
            r += 1
            ring = self._ring(origin, r)
            if visited + len(ring.cells) > population:
                search = _Search(query, k, fresh_since, accept, ranking)
                for cells in chosen:
                    for bucket in cells.values():
                        search.scan(bucket)
                break
        return search.found()

    def _ring(self, origin: int, r: int) -> _Ring:
        """Ring r around origin, computing it (and the rings inside it) on first use."""
        rings = self._rings.get(origin)
        if rings is None:
            if len(self._rings) >= self._CACHE_LIMIT:
                self._rings.clear()
            rings = self._rings[origin] = []
        centre = self._shape(origin)[:3]
        while len(rings) <= r:
            cells = tuple(h3i.grid_ring(origin, len(rings)))
            shapes = [self._shape(cell) for cell in cells]
            inner = min(angle_between(centre, (x, y, z)) - math.atan2(sin_r, cos_r) for x, y, z, cos_r, sin_r in shapes)
            rings.append(_Ring(cells, array("d", (v for shape in shapes for v in shape)), inner))
        return rings[r]

    def _shape(self, cell: int) -> tuple[float, float, float, float, float]:
        shape = self._shapes.get(cell)
        if shape is None:
            if len(self._shapes) >= self._CACHE_LIMIT:
                self._shapes.clear()
            centre = unit_vector(*h3i.cell_to_latlng(cell))
            radius = max(angle_between(centre, unit_vector(lat, lon)) for lat, lon in h3i.cell_to_boundary(cell))
            shape = self._shapes[cell] = (*centre, math.cos(radius), math.sin(radius))
        return shape

    def sure_disk(self, cell: int) -> tuple[float, float, float, float]:
        """A disk around the cell's centre that lies inside the cell with room to spare (centre, cosine of radius).

        A hexagon on one icosahedron face is a hexagon in that face's gnomonic projection, which maps great circles
        to straight lines, so its edges are great-circle arcs and it is the intersection of the six hemispheres they
        bound; a point nearer the centre than every edge's great circle is inside all six. `latlng_to_cell` answers
        from the same projection (a face's region is the points nearest its centre), so such a point is in the cell.
        The radius is 0.99 of that distance, far more than double rounding needs. Pentagons and cells split across
        faces get an empty disk (cosine above 1): their points always go through H3.
        """
        disk = self._sure_disks.get(cell)
        if disk is None:
            if len(self._sure_disks) >= self._CACHE_LIMIT:
                self._sure_disks.clear()
            disk = self._sure_disks[cell] = _sure_disk_of(cell, self._shape(cell)[:3])
        return disk


_NO_DISK = (0.0, 0.0, 1.0, 2.0)
_SURE_DISK_SHARE = 0.99
_SURE_DISK_MIN_MARGIN_COS = 1e-13
"""The disk is tested by a cosine (a dot product of unit vectors, rounded to about 1e-15), so its margin inside the
cell, as a difference of cosines, must stay far above that: it is about 1% of the squared edge distance, and below
about 20 m from the centre to an edge (resolution 12 and finer) a cell gets no disk. At resolution 15 a point on the
rim was found in the neighbouring cell."""


def _sure_disk_of(cell: int, centre: tuple[float, float, float]) -> tuple[float, float, float, float]:
    if h3i.is_pentagon(cell) or len(h3i.get_icosahedron_faces(cell)) != 1:
        return _NO_DISK
    corners = [unit_vector(lat, lon) for lat, lon in h3i.cell_to_boundary(cell)]
    if len(corners) != 6:
        return _NO_DISK
    sides = []
    for (ax, ay, az), (bx, by, bz) in zip(corners, corners[1:] + corners[:1], strict=True):
        nx, ny, nz = ay * bz - az * by, az * bx - ax * bz, ax * by - ay * bx
        sides.append((centre[0] * nx + centre[1] * ny + centre[2] * nz) / math.sqrt(nx * nx + ny * ny + nz * nz))
    if not (all(side > 0 for side in sides) or all(side < 0 for side in sides)):
        return _NO_DISK
    edge = min(math.asin(min(1.0, abs(side))) for side in sides)
    radius = _SURE_DISK_SHARE * edge
    if math.cos(radius) - math.cos(edge) < _SURE_DISK_MIN_MARGIN_COS:
        return _NO_DISK
    return (*centre, math.cos(radius))


class _Terms(NamedTuple):
    """What the compiled walk (`_h3_walk.c`) reads of a search, in this order."""

    qx: float
    qy: float
    qz: float
    since: float
    heap: list[tuple[float, int, float, Any]]
    k: int
    accept: Callable[[Any], bool] | None
    weight: Callable[[Any], float] | None
    """None ranks by plain distance."""
    min_weight: float
    epsilon_cos: float = _EPSILON_COS
    epsilon_rad: float = _EPSILON_RAD
    max_pruning_angle: float = _MAX_PRUNING_ANGLE


class _Search(Generic[E]):
    """The k best held so far during one query, as a max-heap on negated keys.

    Plain distance ranks by squared chord, which orders exactly like the great-circle angle and needs no
    trigonometry per entry; other rankings use angle times weight. An entry's distance is checked against the k-th
    best before `accept` is asked, since most entries a walk meets are too far to matter. The loops over cells and
    entries are compiled (`_h3_walk.c`); the heap is this object's list, kept with heapq.
    """

    __slots__ = ("_bound_for", "_worst_angle", "heap", "k", "plain", "ranking", "terms")

    def __init__(self, query: tuple[float, float, float], k: int, since: float, accept: Callable[[E], bool] | None,
                 ranking: Ranking[E]) -> None:  # fmt: skip
        self.k = k
        self.ranking = ranking
        self.plain = isinstance(ranking, ByDistance)
        self.heap: list[tuple[float, int, float, E]] = []
        weight = None if self.plain else ranking.weight
        self.terms = _Terms(*query, since, self.heap, k, accept, weight, ranking.min_weight)
        self._bound_for = math.nan
        self._worst_angle = 0.0

    def scan(self, bucket: Bucket[E]) -> None:
        """Offer every fresh entry of the bucket; an entry is read only once its distance could make the answer."""
        scan_bucket(bucket, self.terms)

    def beyond_angle(self, least_angle: float) -> bool:
        """True when nothing at least `least_angle` away can beat the k-th best held."""
        return self._bound() and least_angle >= self._worst_angle

    def _bound(self) -> bool:
        """Bring the worst angle W up to date with the heap; False while nothing prunes.

        A cell's points are all at least angle(query, centre) - circumradius away, so the cell is beyond W when
        angle(query, centre) >= W + R, that is when query . centre <= cos(W + R) = cos W cos R - sin W sin R (the
        compiled walk tests each cell so). Everything past a ring of such cells is beyond too: a geodesic to it
        crosses one of them.
        """
        heap = self.heap
        if len(heap) < self.k:
            return False
        worst = -heap[0][0]
        if worst != self._bound_for:
            angle = 2.0 * math.asin(min(1.0, math.sqrt(worst) / 2.0)) if self.plain else worst / self.ranking.min_weight
            angle += _EPSILON_RAD
            self._bound_for, self._worst_angle = worst, angle
        return self._worst_angle <= _MAX_PRUNING_ANGLE

    def found(self) -> list[Found[E]]:
        ordered = sorted(self.heap, reverse=True)  # ascending key; ids are unique, so entries are never compared
        found = []
        for _, _, chord2, entry in ordered:
            distance_m = 2.0 * math.asin(min(1.0, math.sqrt(chord2) / 2.0)) * EARTH_RADIUS_M
            found.append(Found(entry, distance_m, distance_m * self.ranking.weight(entry)))
        return found
