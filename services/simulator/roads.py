"""The street network vehicles drive on: nodes joined by two-way roads of a class (arterial, street, rural), each
class with a free-flow speed and slower in the rush hours. Routes are the fastest at the hour they are planned
(Dijkstra on travel time), so a trip across a river goes round by a bridge, as it does in a real city.

Plain Python; distances in metres, speeds in km/h, hours in the city's local time.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass

from shared.errors import KuaijingError
from shared.geo import great_circle_m

_BUCKET_DEG = 0.01
"""Side of the cells nodes are filed under for nearest-node lookups (about 1 km)."""


@dataclass(frozen=True, slots=True)
class RushHour:
    start_h: float
    end_h: float
    factor: float
    """Share of free-flow speed left on the classes it slows."""
    classes: frozenset[str]

    def covers(self, hour: float) -> bool:
        if self.start_h <= self.end_h:
            return self.start_h <= hour < self.end_h
        return hour >= self.start_h or hour < self.end_h


@dataclass(frozen=True, slots=True)
class Leg:
    """Drive to (`lat`, `lon`) on a road of `road_class` (None: off the network, to or from the nearest node)."""

    lat: float
    lon: float
    road_class: str | None


class RoadNetwork:
    def __init__(
        self,
        nodes: Sequence[tuple[float, float]],
        edges: Sequence[tuple[int, int, str]],
        speeds_kmh: dict[str, float],
        rush_hours: Sequence[RushHour] = (),
    ) -> None:
        self.nodes = list(nodes)
        self.speeds_kmh = dict(speeds_kmh)
        self.rush_hours = tuple(rush_hours)
        self._adjacent: list[list[tuple[int, float, str]]] = [[] for _ in self.nodes]
        for a, b, road_class in edges:
            if not (0 <= a < len(self.nodes) and 0 <= b < len(self.nodes)) or a == b:
                raise KuaijingError(f"road {a}-{b}: its ends must be two different nodes of the {len(nodes)}")
            if road_class not in self.speeds_kmh:
                raise KuaijingError(f"road {a}-{b}: class {road_class!r} has no speed ({', '.join(speeds_kmh)})")
            length = great_circle_m(*self.nodes[a], *self.nodes[b])
            self._adjacent[a].append((b, length, road_class))
            self._adjacent[b].append((a, length, road_class))
        self._buckets: dict[tuple[int, int], list[int]] = {}
        for index, (lat, lon) in enumerate(self.nodes):
            self._buckets.setdefault(_bucket(lat, lon), []).append(index)

    def unreachable_from(self, start: int = 0) -> list[int]:
        """Nodes no road leads to from `start`: a city file must have none."""
        seen, todo = {start}, [start]
        while todo:
            for neighbour, _, _ in self._adjacent[todo.pop()]:
                if neighbour not in seen:
                    seen.add(neighbour)
                    todo.append(neighbour)
        return [n for n in range(len(self.nodes)) if n not in seen]

    def speed_kmh(self, road_class: str | None, hour: float) -> float:
        """Speed on a class of road at a local hour; off the network, the slowest class's."""
        if road_class is None:
            return min(self.speeds_kmh.values())
        speed = self.speeds_kmh[road_class]
        for rush in self.rush_hours:
            if road_class in rush.classes and rush.covers(hour):
                speed *= rush.factor
        return speed

    def speeds_at(self, hour: float) -> dict[str | None, float]:
        """`speed_kmh` of every class (and of None, off the network) at a local hour, for a tick's many lookups."""
        return {road_class: self.speed_kmh(road_class, hour) for road_class in (*self.speeds_kmh, None)}

    def nearest_node(self, lat: float, lon: float) -> int:
        """The node closest to a point: rings of cells outwards until no unsearched cell can hold a closer one."""
        if not self.nodes:
            raise KuaijingError("the road network has no nodes")
        row, col = _bucket(lat, lon)
        side_m = _BUCKET_DEG * 111_000 * min(1.0, math.cos(math.radians(lat)))
        best, best_m, ring = -1, math.inf, 0
        while True:
            for cell in _ring(row, col, ring):
                for node in self._buckets.get(cell, ()):
                    distance = great_circle_m(lat, lon, *self.nodes[node])
                    if distance < best_m:
                        best, best_m = node, distance
            if best_m <= ring * side_m:
                return best
            ring += 1

    def route(self, origin: tuple[float, float], goal: tuple[float, float], hour: float) -> list[Leg]:
        """The fastest way from `origin` to `goal` at `hour`: off-road to the nearest node, along the roads, and
        off-road from the node nearest the goal to the goal itself."""
        start, end = self.nearest_node(*origin), self.nearest_node(*goal)
        path = self._fastest(start, end, hour)
        legs = [Leg(*self.nodes[start], None)]
        legs += [Leg(*self.nodes[b], road_class) for b, road_class in path]
        legs.append(Leg(*goal, None))
        return legs

    def travel_s(self, legs: Sequence[Leg], origin: tuple[float, float], hour: float) -> float:
        """How long `legs` take from `origin` at `hour`, at the speed each leg's road allows."""
        total, here = 0.0, origin
        for leg in legs:
            total += great_circle_m(*here, leg.lat, leg.lon) / (self.speed_kmh(leg.road_class, hour) / 3.6)
            here = (leg.lat, leg.lon)
        return total

    def _fastest(self, start: int, end: int, hour: float) -> list[tuple[int, str]]:
        """Dijkstra on travel time: the nodes after `start` up to `end`, each with the class of road into it."""
        speed_ms = {road_class: self.speed_kmh(road_class, hour) / 3.6 for road_class in self.speeds_kmh}
        best = {start: 0.0}
        came: dict[int, tuple[int, str]] = {}
        queue = [(0.0, start)]
        while queue:
            elapsed, node = heapq.heappop(queue)
            if node == end:
                break
            if elapsed > best[node]:
                continue
            for neighbour, length, road_class in self._adjacent[node]:
                arrival = elapsed + length / speed_ms[road_class]
                if arrival < best.get(neighbour, math.inf):
                    best[neighbour] = arrival
                    came[neighbour] = (node, road_class)
                    heapq.heappush(queue, (arrival, neighbour))
        if end != start and end not in came:
            raise KuaijingError(f"no road leads from node {start} to node {end}")
        path: list[tuple[int, str]] = []
        node = end
        while node != start:
            previous, road_class = came[node]
            path.append((node, road_class))
            node = previous
        path.reverse()
        return path


def _bucket(lat: float, lon: float) -> tuple[int, int]:
    return math.floor(lat / _BUCKET_DEG), math.floor(lon / _BUCKET_DEG)


def _ring(row: int, col: int, ring: int) -> list[tuple[int, int]]:
    """The cells exactly `ring` cells away from (`row`, `col`)."""
    if ring == 0:
        return [(row, col)]
    cells = [(row - ring, c) for c in range(col - ring, col + ring + 1)]
    cells += [(row + ring, c) for c in range(col - ring, col + ring + 1)]
    cells += [(r, col - ring) for r in range(row - ring + 1, row + ring)]
    cells += [(r, col + ring) for r in range(row - ring + 1, row + ring)]
    return cells
