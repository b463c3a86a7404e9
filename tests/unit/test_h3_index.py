"""The H3 walk must return exactly what brute force returns, wherever the query and the fleet are."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

import h3
import h3.api.basic_int as h3i
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.dispatcher.domain.h3_index import ByDistance, H3Index, unit_vector
from shared.geo import great_circle_m


@dataclass
class Entry:
    key: str
    lat: float
    lon: float
    busy: bool
    xyz: tuple[float, float, float]
    position_epoch: float = 0.0
    bucket: Any = None
    slot: int = -1


def build(
    points: list[tuple[float, float]], resolution: int, busy_every: int = 0
) -> tuple[H3Index[Entry], list[Entry]]:
    index: H3Index[Entry] = H3Index(resolution)
    entries = []
    for i, (lat, lon) in enumerate(points):
        busy = busy_every > 0 and i % busy_every == 0
        entry = Entry(f"u{i}", lat, lon, busy, unit_vector(lat, lon), position_epoch=float(i % 4))
        index.add(entry, index.cell_of(lat, lon))
        entries.append(entry)
    return index, entries


def brute_force(
    entries: list[Entry], lat: float, lon: float, k: int, only_free: bool, since: float = -math.inf
) -> list[float]:
    distances = sorted(
        great_circle_m(lat, lon, e.lat, e.lon)
        for e in entries
        if not (only_free and e.busy) and e.position_epoch >= since
    )
    return distances[:k]


def assert_exact(
    index: H3Index[Entry],
    entries: list[Entry],
    lat: float,
    lon: float,
    k: int,
    only_free: bool,
    since: float = -math.inf,
) -> None:
    """`accept` is None when nothing is filtered, as the live map passes it; `since` as its freshness cut."""
    accept = (lambda e: not e.busy) if only_free else None
    found = index.nearest(lat, lon, k, accept=accept, ranking=ByDistance(), fresh_since=since)
    expected = brute_force(entries, lat, lon, k, only_free, since)
    assert len(found) == len(expected)
    got = [f.distance_m for f in found]
    assert got == sorted(got)
    for g, e in zip(got, expected, strict=True):
        assert g == pytest.approx(e, abs=1e-6), (got, expected)
    for f in found:
        assert f.distance_m == pytest.approx(great_circle_m(lat, lon, f.entry.lat, f.entry.lon), abs=1e-6)


def scatter(rng: random.Random, n: int, lat: float, lon: float, spread_deg: float) -> list[tuple[float, float]]:
    points = []
    for _ in range(n):
        p_lat = max(-89.999, min(89.999, lat + rng.uniform(-spread_deg, spread_deg)))
        p_lon = (lon + rng.uniform(-spread_deg, spread_deg) + 180.0) % 360.0 - 180.0
        points.append((p_lat, p_lon))
    return points


CITY = (27.24, 111.47)


@pytest.mark.no_cover
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(0, 400),
    k=st.integers(1, 12),
    resolution=st.sampled_from([6, 7, 8, 9]),
    spread=st.sampled_from([0.005, 0.05, 0.5]),
    only_free=st.booleans(),
    since=st.sampled_from([-math.inf, 0.0, 2.0]),
)
def test_nearest_equals_brute_force_over_random_city_fleets(
    seed: int, n: int, k: int, resolution: int, spread: float, only_free: bool, since: float
) -> None:
    rng = random.Random(seed)
    index, entries = build(scatter(rng, n, *CITY, spread), resolution, busy_every=3)
    for _ in range(5):
        q_lat, q_lon = CITY[0] + rng.uniform(-2 * spread, 2 * spread), CITY[1] + rng.uniform(-2 * spread, 2 * spread)
        assert_exact(index, entries, q_lat, q_lon, k, only_free, since)


@pytest.mark.parametrize("resolution", [7, 9])
def test_dense_clusters_with_an_empty_region_between_them(resolution: int) -> None:
    rng = random.Random(7)
    points = scatter(rng, 300, 27.20, 111.40, 0.002) + scatter(rng, 300, 27.40, 111.60, 0.002)
    index, entries = build(points, resolution, busy_every=2)
    for q in [(27.30, 111.50), (27.2001, 111.4001), (27.41, 111.61), (28.5, 112.5)]:
        assert_exact(index, entries, *q, k=5, only_free=True)
        assert_exact(index, entries, *q, k=20, only_free=False)


@pytest.mark.parametrize(
    ("lat", "lon"),
    [(89.99, 0.0), (-89.99, 45.0), (89.5, 179.9), (0.0, 179.999), (0.0, -179.999), (-16.5, 180.0), (64.7, 10.53)],
)
def test_the_poles_and_the_antimeridian(lat: float, lon: float) -> None:
    rng = random.Random(11)
    index, entries = build(scatter(rng, 300, lat, lon, 0.3), 7, busy_every=4)
    for _ in range(10):
        q_lat = max(-90.0, min(90.0, lat + rng.uniform(-0.3, 0.3)))
        q_lon = (lon + rng.uniform(-0.3, 0.3) + 180.0) % 360.0 - 180.0
        assert_exact(index, entries, q_lat, q_lon, 5, only_free=True)


@pytest.mark.parametrize("pentagon_number", [0, 3, 7, 11])
def test_cells_next_to_h3_pentagons(pentagon_number: int) -> None:
    pentagon = h3.get_pentagons(7)[pentagon_number]
    lat, lon = h3.cell_to_latlng(pentagon)
    rng = random.Random(pentagon_number)
    index, entries = build(scatter(rng, 200, lat, lon, 0.2), 7, busy_every=3)
    for _ in range(10):
        assert_exact(index, entries, lat + rng.uniform(-0.1, 0.1), lon + rng.uniform(-0.1, 0.1), 5, only_free=True)


def test_an_empty_index_or_a_fleet_smaller_than_k() -> None:
    index, _ = build([], 9)
    assert index.nearest(0.0, 0.0, 5, accept=lambda e: True, ranking=ByDistance()) == []
    index, _ = build([(27.24, 111.47), (27.25, 111.48)], 9)
    assert len(index.nearest(27.0, 111.0, 5, accept=lambda e: True, ranking=ByDistance())) == 2


@pytest.mark.no_cover
def test_find_k_then_one_more_ring_is_not_enough_but_the_bound_is() -> None:
    # A unit just outside ring r+1 can still beat the k-th found: a regression guard for the stopping rule.
    rng = random.Random(2024)
    index, entries = build(scatter(rng, 1000, *CITY, 0.3), 9)
    misses = 0
    for _ in range(300):
        q_lat, q_lon = CITY[0] + rng.uniform(-0.3, 0.3), CITY[1] + rng.uniform(-0.3, 0.3)
        found = index.nearest(q_lat, q_lon, 5, accept=lambda e: True, ranking=ByDistance())
        expected = brute_force(entries, q_lat, q_lon, 5, only_free=False)
        misses += any(not math.isclose(f.distance_m, e, abs_tol=1e-6) for f, e in zip(found, expected, strict=True))
    assert misses == 0


def test_moving_an_entry_between_cells_keeps_the_count() -> None:
    index, [entry] = build([(27.24, 111.47)], 9)
    entry.lat, entry.lon, entry.xyz = 27.30, 111.50, unit_vector(27.30, 111.50)
    index.remove(entry)
    index.add(entry, index.cell_of(27.30, 111.50))
    assert len(index) == 1
    assert index.layers[None].keys() == {index.cell_of(27.30, 111.50)}, "the emptied bucket is dropped"
    [found] = index.nearest(27.30, 111.50, 1, accept=lambda e: True, ranking=ByDistance())
    assert found.distance_m == pytest.approx(0.0, abs=1e-6)


def point_at(centre: tuple[float, float, float], angle: float, bearing: float) -> tuple[float, float]:
    """The point `angle` radians from `centre` towards `bearing`, as (lat, lon) in degrees."""
    cx, cy, cz = centre
    ax, ay, az = (1.0, 0.0, 0.0) if abs(cz) > 0.9 else (0.0, 0.0, 1.0)
    ex, ey, ez = cy * az - cz * ay, cz * ax - cx * az, cx * ay - cy * ax
    norm = math.sqrt(ex * ex + ey * ey + ez * ez)
    ex, ey, ez = ex / norm, ey / norm, ez / norm
    fx, fy, fz = cy * ez - cz * ey, cz * ex - cx * ez, cx * ey - cy * ex
    dx, dy, dz = (math.cos(bearing) * e + math.sin(bearing) * f for e, f in ((ex, fx), (ey, fy), (ez, fz)))
    px, py, pz = (math.cos(angle) * c + math.sin(angle) * d for c, d in ((cx, dx), (cy, dy), (cz, dz)))
    return math.degrees(math.asin(max(-1.0, min(1.0, pz)))), math.degrees(math.atan2(py, px))


@settings(max_examples=400, deadline=None)
@given(
    lat=st.floats(-89.9, 89.9),
    lon=st.floats(-180.0, 180.0),
    resolution=st.integers(0, 15),
    share=st.one_of(st.floats(0.0, 1.0, exclude_max=True), st.just(1.0 - 1e-12)),
    bearing=st.floats(0.0, 2 * math.pi),
)
def test_every_point_of_a_cells_sure_disk_is_in_the_cell(
    lat: float, lon: float, resolution: int, share: float, bearing: float
) -> None:
    """The live map's update skips H3 for points in the disk, so the disk must never reach outside the cell, however
    close to its edge the point is and wherever on Earth the cell is (poles, antimeridian, icosahedron edges)."""
    index: H3Index[Entry] = H3Index(resolution)
    cell = index.cell_of(lat, lon)
    *centre, cos_radius = index.sure_disk(cell)
    if cos_radius > 1.0:
        assert h3i.is_pentagon(cell) or len(h3i.get_icosahedron_faces(cell)) > 1 or resolution >= 11
        return
    point = point_at((centre[0], centre[1], centre[2]), share * math.acos(cos_radius), bearing)
    assert index.cell_of(*point) == cell


@pytest.mark.parametrize("resolution", [1, 4, 7])
def test_sure_disks_near_the_icosahedrons_corners_and_edges(resolution: int) -> None:
    """Cells around pentagons include hexagons split across faces, some with six corners; their points lie in two
    gnomonic projections, so no disk is trusted there, and every disk that is stays inside its cell."""
    index: H3Index[Entry] = H3Index(resolution)
    trusted = split = 0
    for pentagon in h3i.get_pentagons(resolution):
        for cell in h3i.grid_disk(pentagon, 4):
            *centre, cos_radius = index.sure_disk(cell)
            if len(h3i.get_icosahedron_faces(cell)) > 1 or h3i.is_pentagon(cell):
                split += 1
                assert cos_radius > 1.0
                continue
            trusted += 1
            radius = math.acos(cos_radius)
            for step in range(24):
                point = point_at((centre[0], centre[1], centre[2]), (1.0 - 1e-9) * radius, step * math.pi / 12)
                assert index.cell_of(*point) == cell
    assert trusted > 0
    assert split > 0


@pytest.mark.parametrize("resolution", [5, 8, 11])
def test_an_ordinary_cells_sure_disk_is_nearly_its_inscribed_circle(resolution: int) -> None:
    """Else the property above would hold of a disk too small to spare any H3 call."""
    index: H3Index[Entry] = H3Index(resolution)
    cell = index.cell_of(27.24, 111.47)
    *centre, cos_radius = index.sure_disk(cell)
    corners = [unit_vector(lat, lon) for lat, lon in h3i.cell_to_boundary(cell)]
    nearest_corner = min(math.acos(sum(c * v for c, v in zip(centre, corner, strict=True))) for corner in corners)
    assert 0.8 * nearest_corner < math.acos(cos_radius) < math.cos(math.pi / 6) * nearest_corner


@pytest.mark.no_cover
@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), resolution=st.sampled_from([7, 8, 9]))
def test_moving_entries_places_each_where_h3_would(seed: int, resolution: int) -> None:
    """`relocate` with steps a vehicle makes between pings and with jumps across cells: every entry ends in the cell
    `cell_of` gives for its new position, once, and nearest searches find it there."""
    rng = random.Random(seed)
    index, entries = build(scatter(rng, 40, 27.24, 111.47, 0.05), resolution)
    cells = {entry.key: index.cell_of(entry.lat, entry.lon) for entry in entries}
    for _ in range(400):
        entry = rng.choice(entries)
        step = 0.0001 if rng.random() < 0.8 else 0.01
        entry.lat += rng.uniform(-step, step)
        entry.lon += rng.uniform(-step, step)
        entry.xyz = unit_vector(entry.lat, entry.lon)
        cells[entry.key] = index.relocate(entry, entry.lat, entry.lon)
        assert cells[entry.key] == index.cell_of(entry.lat, entry.lon)
    assert len(index) == len(entries)
    for entry in entries:
        holders = [cell for cell, bucket in index.layers[None].items() if any(e is entry for e in bucket.entries)]
        assert holders == [cells[entry.key]]
    for lat, lon in [(27.24, 111.47), (27.27, 111.5)]:
        assert_exact(index, entries, lat, lon, 5, only_free=False)


def test_an_entry_held_nowhere_is_placed_by_h3_and_one_a_layer_does_not_hold_is_not_removed_from_it() -> None:
    index, [held] = build([(27.24, 111.47)], 8)
    stray = Entry("stray", 27.30, 111.50, False, unit_vector(27.30, 111.50))
    assert index.relocate(stray, stray.lat, stray.lon) == index.cell_of(stray.lat, stray.lon)
    assert stray.bucket is not None
    assert (len(index), stray.bucket.cell) == (2, index.cell_of(stray.lat, stray.lon))
    index.remove(held, layer="another layer")
    assert len(index) == 2
    assert held.bucket is not None


class ByWeightedDistance:
    """ETA-like ranking: each entry's distance times its own seconds-per-metre."""

    def __init__(self, weights: dict[str, float]) -> None:
        self._weights = weights
        self.min_weight = min(weights.values(), default=1.0)

    def weight(self, entry: Entry) -> float:
        return self._weights[entry.key]


@pytest.mark.no_cover
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 300), k=st.integers(1, 8), resolution=st.sampled_from([7, 9]))
def test_nearest_by_eta_equals_brute_force(seed: int, n: int, k: int, resolution: int) -> None:
    rng = random.Random(seed)
    index, entries = build(scatter(rng, n, *CITY, 0.05), resolution)
    weights = {e.key: rng.choice([0.04, 0.08, 0.12]) for e in entries}
    ranking = ByWeightedDistance(weights)
    for _ in range(5):
        q_lat, q_lon = CITY[0] + rng.uniform(-0.06, 0.06), CITY[1] + rng.uniform(-0.06, 0.06)
        found = index.nearest(q_lat, q_lon, k, ranking=ranking)
        expected = sorted(great_circle_m(q_lat, q_lon, e.lat, e.lon) * weights[e.key] for e in entries)[:k]
        assert [f.score for f in found] == pytest.approx(expected, abs=1e-6)
