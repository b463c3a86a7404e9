"""What the console draws under the units when no tile server can be reached: the city file's streets, one
feature per road class, and its named places as addresses a dispatcher can pick for a new call."""

from __future__ import annotations

from typing import Any

from shared.city import CityFile


def base_map(city: CityFile | None) -> dict[str, Any]:
    """`GET /v1/map`: the streets as GeoJSON ([lon, lat], one MultiLineString per class) and the places."""
    if city is None:
        return {"name": None, "streets": {"type": "FeatureCollection", "features": []}, "places": []}
    nodes = city.roads.nodes
    by_class: dict[str, list[list[list[float]]]] = {}
    for a, b, road_class in city.roads.roads:
        by_class.setdefault(road_class, []).append([[nodes[a][1], nodes[a][0]], [nodes[b][1], nodes[b][0]]])
    features = [
        {"type": "Feature", "properties": {"class": road_class},
         "geometry": {"type": "MultiLineString", "coordinates": lines}}
        for road_class, lines in sorted(by_class.items())
    ]  # fmt: skip
    places = [{"name": area.name, "lat": area.lat, "lon": area.lon} for area in city.calls.areas]
    return {"name": city.name, "streets": {"type": "FeatureCollection", "features": features}, "places": places}
