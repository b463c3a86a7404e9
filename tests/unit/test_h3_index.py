"""The H3 walk must return exactly what brute force returns, wherever the query and the fleet are."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import h3
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


def build(
    points: list[tuple[float, float]], resolution: int, busy_every: int = 0
) -> tuple[H3Index[Entry], list[Entry]]:
    index: H3Index[Entry] = H3Index(resolution)
    entries = []
    for i, (lat, lon) in enumerate(points):
        busy = busy_every > 0 and i % busy_every == 0
        entry = Entry(f"u{i}", lat, lon, busy, unit_vector(lat, lon), position_epoch=float(i % 4))
        index.add(entry.key, entry, index.cell_of(lat, lon))
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
    index, _ = build([(27.24, 111.47)], 9)
    entry = Entry("u0", 27.30, 111.50, False, unit_vector(27.30, 111.50))
    old_cell = index.cell_of(27.24, 111.47)
    index.remove("u0", old_cell)
    index.add("u0", entry, index.cell_of(27.30, 111.50))
    assert len(index) == 1
    [found] = index.nearest(27.30, 111.50, 1, accept=lambda e: True, ranking=ByDistance())
    assert found.distance_m == pytest.approx(0.0, abs=1e-6)


class ByWeightedDistance:
    """ETA-like ranking: each entry's distance times its own seconds-per-metre."""

    def __init__(self, weights: dict[str, float]) -> None:
        self._weights = weights
        self.min_weight = min(weights.values(), default=1.0)

    def weight(self, entry: Entry) -> float:
        return self._weights[entry.key]


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
