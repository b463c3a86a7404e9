"""How the default city file (`cities/shaoyang.json`) is laid out, modelled on Shaoyang, Hunan: 33 fast-response
platforms on rings around the centre, each with a command car, two patrol cars and four motorcycles; eight
township police stations out in the countryside with two patrol cars each; a street grid with arterials every
2.4 km, cut by the Zi river with five bridges; winding rural roads out to the townships; and call areas whose
rates follow the hour of the day.

`python -m services.simulator.shaoyang` writes the file again; a unit test checks the file is what this lays out.
"""

from __future__ import annotations

import math
import random
import sys
from pathlib import Path
from typing import Any

import orjson

from services.simulator.city import DEFAULT_CITY, offset

CENTRE = (27.2418, 111.4672)
"""Shaoyang's city centre."""
GRID_M = 600
HALF_LINES = 18
"""Streets every 600 m, 18 each way from the centre: a grid 21.6 km across."""
ARTERIAL_EVERY = 4
RIVER_ROW = 1
"""The Zi river runs between the 1st and 2nd east-west streets north of the centre."""
BRIDGE_COLUMNS = (-12, -5, 0, 4, 11)
TOWNSHIPS = ("板桥乡", "蔡锷乡", "罗市镇", "雨溪街道", "九井乡", "檀江街道", "火厂坪镇", "五峰铺镇")

_HOURLY = {
    # relative 110 call rates by local hour, 00:00 first
    "residential": [5, 4, 3, 2, 2, 2, 3, 5, 6, 6, 6, 7, 7, 6, 6, 7, 8, 9, 10, 11, 11, 10, 8, 6],
    "nightlife": [9, 8, 6, 4, 2, 1, 1, 1, 2, 2, 3, 4, 5, 5, 4, 4, 5, 6, 8, 10, 12, 13, 12, 11],
    "commercial": [2, 1, 1, 1, 1, 1, 2, 4, 7, 9, 10, 10, 10, 10, 10, 10, 10, 10, 9, 8, 6, 4, 3, 2],
    "rural": [2, 1, 1, 1, 1, 2, 3, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 5, 6, 6, 5, 4, 3, 2],
}


def _point(north_m: float, east_m: float) -> list[float]:
    lat, lon = offset(*CENTRE, north_m=north_m, east_m=east_m)
    return [round(lat, 6), round(lon, 6)]


def _square(centre: tuple[float, float], half_m: float) -> dict[str, Any]:
    south, west = offset(*centre, north_m=-half_m, east_m=-half_m)
    north, east = offset(*centre, north_m=half_m, east_m=half_m)
    ring = [[round(x, 6), round(y, 6)] for x, y in ((west, south), (east, south), (east, north), (west, north))]
    return {"type": "Polygon", "coordinates": [[*ring, ring[0]]]}


def layout() -> dict[str, Any]:
    rng = random.Random(20261130)
    nodes: list[list[float]] = []
    roads: list[list[int | str]] = []
    grid: dict[tuple[int, int], int] = {}
    lines = range(-HALF_LINES, HALF_LINES + 1)
    for row in lines:
        for col in lines:
            grid[row, col] = len(nodes)
            jitter = (rng.uniform(-60, 60), rng.uniform(-60, 60))
            nodes.append(_point(row * GRID_M + jitter[0], col * GRID_M + jitter[1]))
    for row in lines:
        for col in lines:
            if col < HALF_LINES:
                road_class = "arterial" if row % ARTERIAL_EVERY == 0 else "street"
                roads.append([grid[row, col], grid[row, col + 1], road_class])
            crosses_river = row == RIVER_ROW and col not in BRIDGE_COLUMNS
            if row < HALF_LINES and not crosses_river:
                road_class = "arterial" if col % ARTERIAL_EVERY == 0 or col in BRIDGE_COLUMNS else "street"
                roads.append([grid[row, col], grid[row + 1, col], road_class])

    platforms: list[dict[str, Any]] = []
    for p in range(33):
        ring = 0 if p < 5 else (1 if p < 17 else 2)
        radius = (1_200, 4_500, 9_000)[ring] * rng.uniform(0.8, 1.2)
        angle = 2 * math.pi * p / 33 + rng.uniform(-0.1, 0.1)
        lat, lon = _point(radius * math.cos(angle), radius * math.sin(angle))
        platforms.append(
            {"id": f"SY-{p + 1:02d}", "name": f"邵阳快警平台 {p + 1}", "kind": "fast_response", "lat": lat,
             "lon": lon, "crew": {"command_car": 1, "patrol_car": 2, "motorcycle": 4}, "patrol_radius_m": 1_500}
        )  # fmt: skip

    areas: list[dict[str, Any]] = [
        {"name": "城区 whole city", "north": 0, "east": 0, "radius_m": 9_500, "weight": 6, "profile": "residential"},
        {"name": "中心城区 central city", "north": 0, "east": 0, "radius_m": 3_400, "weight": 5,
         "profile": "residential"},
        {"name": "宝庆路商圈 Baoqing Road shops", "north": 0, "east": 0, "radius_m": 400, "weight": 2,
         "profile": "commercial"},
        {"name": "火车站 railway station", "north": 1_800, "east": -900, "radius_m": 400, "weight": 1.5,
         "profile": "nightlife"},
        {"name": "夜市 night market", "north": -1_500, "east": 1_400, "radius_m": 400, "weight": 1.5,
         "profile": "nightlife"},
    ]  # fmt: skip
    for t, name in enumerate(TOWNSHIPS):
        angle = 2 * math.pi * (t + 0.5) / len(TOWNSHIPS) + rng.uniform(-0.15, 0.15)
        distance = rng.uniform(15_000, 24_000)
        north, east = distance * math.cos(angle), distance * math.sin(angle)
        town = {}
        for r in (-1, 0, 1):
            for c in (-1, 0, 1):
                town[r, c] = len(nodes)
                nodes.append(_point(north + r * 400, east + c * 400))
        for r in (-1, 0, 1):
            for c in (-1, 0, 1):
                if c < 1:
                    roads.append([town[r, c], town[r, c + 1], "street"])
                if r < 1:
                    roads.append([town[r, c], town[r + 1, c], "street"])
        rows, cols = north / GRID_M, east / GRID_M
        scale = HALF_LINES / max(abs(rows), abs(cols))
        start = grid[round(rows * scale), round(cols * scale)]
        start_lat, start_lon = nodes[start]
        previous, steps, wiggle = start, 14, rng.uniform(600, 1_400)
        begin = (
            (start_lat - CENTRE[0]) * 111_195.0,
            (start_lon - CENTRE[1]) * 111_195.0 * math.cos(math.radians(CENTRE[0])),
        )
        for s in range(1, steps):
            share = s / steps
            side = wiggle * math.sin(share * math.pi * 3)
            n = begin[0] + (north - begin[0]) * share - side * math.sin(angle)
            e = begin[1] + (east - begin[1]) * share + side * math.cos(angle)
            nodes.append(_point(n, e))
            roads.append([previous, len(nodes) - 1, "rural"])
            previous = len(nodes) - 1
        roads.append([previous, town[0, 0], "rural"])
        lat, lon = nodes[town[0, 0]]
        platforms.append(
            {"id": f"SY-R{t + 1:02d}", "name": f"{name}派出所", "kind": "rural_station", "lat": lat, "lon": lon,
             "crew": {"patrol_car": 2}, "patrol_radius_m": 3_000}
        )  # fmt: skip
        areas.append({"name": name, "north": north, "east": east, "radius_m": 2_500, "weight": 0.6,
                      "profile": "rural"})  # fmt: skip

    key_areas = [offset(*CENTRE, north_m=n, east_m=e) for n, e in ((0, 0), (1_800, -900), (-1_500, 1_400))]
    zones = [
        {"id": "urban", "class": "other_urban", "geometry": _square(CENTRE, 11_000)},
        {"id": "central", "class": "central_urban", "geometry": _square(CENTRE, 3_500)},
        *({"id": f"key-{i + 1}", "class": "key_area", "geometry": _square(c, 400)} for i, c in enumerate(key_areas)),
    ]
    dead_spots = [
        {"name": "资江隧道 Zijiang tunnel", "north": 2_500, "east": -1_500, "radius_m": 450},
        {"name": "双清公园山地 Shuangqing park hills", "north": -2_200, "east": 2_600, "radius_m": 600},
        {"name": "城南桥下 under the south bridge", "north": -4_000, "east": -800, "radius_m": 400},
    ]
    return {
        "format": "kuaijing-city/1",
        "name": "邵阳 Shaoyang (modelled)",
        "utc_offset_hours": 8,
        "kinds": {
            "command_car": {"respond": 1.1, "patrol": 0.5},
            "patrol_car": {"respond": 1.2, "patrol": 0.55},
            "motorcycle": {"respond": 1.0, "patrol": 0.5},
        },
        "platforms": platforms,
        "zones": zones,
        "roads": {
            "speeds_kmh": {"arterial": 50, "street": 30, "rural": 60},
            "rush_hours": [
                {"from": "07:00", "to": "09:00", "factor": 0.5, "classes": ["arterial", "street"]},
                {"from": "17:00", "to": "19:00", "factor": 0.5, "classes": ["arterial", "street"]},
            ],
            "nodes": nodes,
            "roads": roads,
        },
        "dead_spots": [_placed(d) for d in dead_spots],
        "calls": {"profiles": _HOURLY, "areas": [_placed(a) for a in areas]},
    }


def _placed(entry: dict[str, Any]) -> dict[str, Any]:
    """An entry laid out in metres from the centre, with its place as latitude and longitude."""
    lat, lon = _point(entry.pop("north"), entry.pop("east"))
    return {"name": entry.pop("name"), "lat": lat, "lon": lon, **entry}


def render() -> bytes:
    """Indented JSON, but a junction or a road a line: the file stays readable and its diffs small."""
    document = layout()
    roads = document["roads"]
    listed = {"nodes": roads.pop("nodes"), "roads": roads.pop("roads")}
    text = orjson.dumps(document, option=orjson.OPT_INDENT_2).decode()
    head, tail = text.split('"rush_hours"', 1)
    items = "".join(
        f'"{name}": [\n' + ",\n".join(f"      {orjson.dumps(item).decode()}" for item in values) + "\n    ],\n    "
        for name, values in listed.items()
    )
    return (head + items + '"rush_hours"' + tail + "\n").encode()


def main(path: Path = DEFAULT_CITY) -> int:
    path.write_bytes(render())
    sys.stderr.write(f"{path}: written\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
