"""Great-circle distance on the contract's sphere and the H3 cell every position carries."""

from __future__ import annotations

import math

import h3

EARTH_RADIUS_M = 6_371_008.8
"""Mean Earth radius (IUGG R1), fixed by contract section 4 for every `distance_m`."""

POSITION_H3_RESOLUTION = 9
"""Resolution of the `h3` field on `kuaijing.positions` (contract section 3)."""


def great_circle_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Haversine distance in metres; numerically stable for the short distances dispatch cares about."""
    phi1 = math.radians(lat1)
    phi2 = math.radians(lat2)
    dphi = phi2 - phi1
    dlmb = math.radians(lon2 - lon1)
    a = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlmb / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def h3_cell(lat: float, lon: float, resolution: int = POSITION_H3_RESOLUTION) -> str:
    """The H3 cell containing the point, as the hex string the contract publishes."""
    cell: str = h3.latlng_to_cell(lat, lon, resolution)
    return cell
