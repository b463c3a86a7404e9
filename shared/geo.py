"""Great-circle distance on the contract's sphere and the H3 cell every position carries."""

from __future__ import annotations

from math import asin, cos, radians, sin, sqrt

from shared._h3_cell import cell as _cell

EARTH_RADIUS_M = 6_371_008.8
"""Mean Earth radius (IUGG R1), fixed by contract section 4 for every `distance_m`."""

POSITION_H3_RESOLUTION = 9
"""Resolution of the `h3` field on `kuaijing.positions` (contract section 3)."""


def great_circle_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Haversine distance in metres; numerically stable for the short distances dispatch cares about. (The
    simulator calls it for every vehicle on every tick: math's functions are bound here, not looked up.)"""
    phi1 = radians(lat1)
    phi2 = radians(lat2)
    dlmb = radians(lon2 - lon1)
    a = sin((phi2 - phi1) / 2) ** 2 + cos(phi1) * cos(phi2) * sin(dlmb / 2) ** 2
    root = sqrt(a)
    return 2 * EARTH_RADIUS_M * asin(root if root < 1.0 else 1.0)


M_PER_DEGREE_LATITUDE = 111_195.0
"""A degree of latitude on the contract's sphere (111,195.08 m), rounded down so that `north_south_m` is a bound."""


def north_south_m(lat1: float, lat2: float) -> float:
    """A bound never above `great_circle_m` between points at these latitudes (a great circle is never shorter than
    its north-south part): a test that rules most far points out without a square root."""
    return abs(lat1 - lat2) * M_PER_DEGREE_LATITUDE


def h3_cell(lat: float, lon: float, resolution: int = POSITION_H3_RESOLUTION) -> str:
    """The H3 cell containing the point, as the hex string the contract publishes: every accepted position's, so
    computed by h3's own compiled function without its Python wrapper (`_h3_cell.c`)."""
    cell: str = _cell(lat, lon, resolution)
    return cell
