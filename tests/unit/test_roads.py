"""The street network on hand-made maps: the fastest route, not the shortest, at the hour it is planned; the
rush hours slow only the classes they name, also across midnight; nearest nodes found exactly."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.simulator.roads import RoadNetwork, RushHour
from shared.errors import KuaijingError
from shared.geo import great_circle_m

# A square 1 km a side: the direct road is a slow street, the way round two sides an arterial.
A, B, C = (27.0, 111.0), (27.009, 111.0), (27.009, 111.01)
SPEEDS = {"arterial": 60.0, "street": 20.0}


def square(rush: tuple[RushHour, ...] = ()) -> RoadNetwork:
    return RoadNetwork([A, B, C], [(0, 2, "street"), (0, 1, "arterial"), (1, 2, "arterial")], SPEEDS, rush)


def test_the_fastest_route_goes_round_by_the_arterial() -> None:
    roads = square()
    legs = roads.route(A, C, hour=12)
    assert [(leg.lat, leg.lon) for leg in legs] == [A, B, C, C]
    assert [leg.road_class for leg in legs] == [None, "arterial", "arterial", None]
    direct_s = great_circle_m(*A, *C) / (20 / 3.6)
    assert roads.travel_s(legs, A, hour=12) < direct_s


def test_in_the_rush_hour_the_slowed_arterial_loses_to_the_street() -> None:
    evening = RushHour(17, 19, 0.25, frozenset({"arterial"}))
    roads = square((evening,))
    assert [leg.road_class for leg in roads.route(A, C, hour=18)] == [None, "street", None]
    assert [leg.road_class for leg in roads.route(A, C, hour=19.5)] == [None, "arterial", "arterial", None]
    assert roads.speed_kmh("street", 18) == 20.0
    assert roads.speed_kmh(None, 12) == 20.0, "off the network: the slowest class"
    for hour in (12, 18):
        assert roads.speeds_at(hour) == {c: roads.speed_kmh(c, hour) for c in ("street", "arterial", None)}


def test_a_rush_hour_may_run_over_midnight() -> None:
    late = RushHour(22, 2, 0.5, frozenset({"street"}))
    assert [late.covers(h) for h in (21.9, 22, 23.5, 0, 1.9, 2, 12)] == [False, True, True, True, True, False, False]


def test_a_route_starts_and_ends_off_the_network_at_the_points_themselves() -> None:
    roads = square()
    origin, goal = (26.9995, 110.9995), (27.0092, 111.0103)
    legs = roads.route(origin, goal, hour=3)
    assert (legs[0].lat, legs[0].lon) == A
    assert (legs[-1].lat, legs[-1].lon) == goal


@given(st.floats(26.9, 27.1), st.floats(110.9, 111.1), st.integers(0, 2**32 - 1))
def test_the_nearest_node_is_the_nearest_of_all(lat: float, lon: float, seed: int) -> None:
    rng = random.Random(seed)
    nodes = [(27 + rng.uniform(-0.05, 0.05), 111 + rng.uniform(-0.05, 0.05)) for _ in range(60)]
    roads = RoadNetwork(nodes, [(i, i + 1, "street") for i in range(59)], SPEEDS)
    best = min(range(60), key=lambda i: great_circle_m(lat, lon, *nodes[i]))
    found = roads.nearest_node(lat, lon)
    assert great_circle_m(lat, lon, *nodes[found]) == great_circle_m(lat, lon, *nodes[best])


def test_roads_must_join_known_nodes_with_known_classes() -> None:
    with pytest.raises(KuaijingError, match="class 'lane' has no speed"):
        RoadNetwork([A, B], [(0, 1, "lane")], SPEEDS)
    with pytest.raises(KuaijingError, match="two different nodes"):
        RoadNetwork([A, B], [(0, 5, "street")], SPEEDS)
    island = RoadNetwork([A, B, C], [(0, 1, "street")], SPEEDS)
    assert island.unreachable_from(0) == [2]
    with pytest.raises(KuaijingError, match="no road leads"):
        island.route(A, C, hour=12)
