"""Zone classification: a point takes the strictest class of the zones containing it, `rural` when none does.

Polygons are GeoJSON in lon/lat; at city scale planar containment in degrees is what the polygons mean. Shapely's
STRtree narrows the candidates to the polygons whose bounding boxes contain the point before exact containment.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import shapely
from shapely.geometry import Point, shape
from shapely.strtree import STRtree

from shared.contract.registry import ZONE_TARGET_S, ZoneClass
from shared.errors import InvalidError

STRICTNESS: tuple[ZoneClass, ...] = (
    ZoneClass.KEY_AREA,
    ZoneClass.CENTRAL_URBAN,
    ZoneClass.OTHER_URBAN,
    ZoneClass.RURAL,
)


@dataclass(frozen=True)
class ZoneDefinition:
    zone_id: str
    zone_class: ZoneClass
    geometry: Mapping[str, Any]


def validate_geometry(geometry: Mapping[str, Any]) -> None:
    """A zone must be a valid, non-empty polygon: self-intersections would make containment meaningless."""
    try:
        polygon = shape(geometry)
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise InvalidError(field="geometry", error=f"not a GeoJSON polygon ({e})") from e
    if polygon.is_empty or polygon.geom_type not in ("Polygon", "MultiPolygon"):
        raise InvalidError(field="geometry", error="must be a non-empty Polygon or MultiPolygon")
    if not polygon.is_valid:
        raise InvalidError(field="geometry", error=f"invalid polygon ({shapely.is_valid_reason(polygon)})")


class ZoneMap:
    def __init__(self, zones: Iterable[ZoneDefinition] = ()) -> None:
        self._zones = list(zones)
        self._geometries = [shape(z.geometry) for z in self._zones]
        self._tree = STRtree(self._geometries) if self._geometries else None

    def __len__(self) -> int:
        return len(self._zones)

    def classify(self, *, lat: float, lon: float) -> ZoneClass:
        if self._tree is None:
            return ZoneClass.RURAL
        point = Point(lon, lat)
        classes = {self._zones[i].zone_class for i in self._tree.query(point, predicate="intersects")}
        return next((c for c in STRICTNESS if c in classes), ZoneClass.RURAL)

    @staticmethod
    def target_s(zone_class: ZoneClass) -> int:
        return ZONE_TARGET_S[zone_class]
