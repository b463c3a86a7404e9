import math

import h3
import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.ingest.domain.gcj02 import gcj02_to_wgs84, outside_china, wgs84_to_gcj02
from shared import _h3_cell
from shared.geo import EARTH_RADIUS_M, great_circle_m, h3_cell, north_south_m

# Published WGS-84 / GCJ-02 pairs from googollee/eviltransform's test suite (python/test.py: shanghai, shenzhen,
# beijing), the reference implementation most Chinese map SDK ports are checked against.
REFERENCE_PAIRS = [
    (31.1774276, 121.5272106, 31.17530398364597, 121.531541859215),
    (22.543847, 113.912316, 22.540796131694766, 113.9171764808363),
    (39.911954, 116.377817, 39.91334545536069, 116.38404722455657),
]


@pytest.mark.parametrize(("wgs_lat", "wgs_lon", "gcj_lat", "gcj_lon"), REFERENCE_PAIRS)
def test_wgs84_to_gcj02_matches_published_pairs(wgs_lat: float, wgs_lon: float, gcj_lat: float, gcj_lon: float) -> None:
    lat, lon = wgs84_to_gcj02(wgs_lat, wgs_lon)
    assert great_circle_m(lat, lon, gcj_lat, gcj_lon) < 0.01


@pytest.mark.parametrize(("wgs_lat", "wgs_lon", "gcj_lat", "gcj_lon"), REFERENCE_PAIRS)
def test_gcj02_to_wgs84_recovers_published_pairs(
    wgs_lat: float, wgs_lon: float, gcj_lat: float, gcj_lon: float
) -> None:
    lat, lon = gcj02_to_wgs84(gcj_lat, gcj_lon)
    assert great_circle_m(lat, lon, wgs_lat, wgs_lon) < 0.01


@given(lat=st.floats(min_value=18.0, max_value=53.5), lon=st.floats(min_value=73.5, max_value=135.0))
def test_gcj02_round_trip_is_under_one_metre_anywhere_in_china(lat: float, lon: float) -> None:
    gcj_lat, gcj_lon = wgs84_to_gcj02(lat, lon)
    back_lat, back_lon = gcj02_to_wgs84(gcj_lat, gcj_lon)
    assert great_circle_m(lat, lon, back_lat, back_lon) < 1.0


def test_gcj02_offset_is_hundreds_of_metres_inside_china() -> None:
    lat, lon = wgs84_to_gcj02(27.2418, 111.4672)
    assert 100 < great_circle_m(27.2418, 111.4672, lat, lon) < 1000


def test_gcj02_is_identity_outside_china() -> None:
    assert outside_china(48.8566, 2.3522)
    assert wgs84_to_gcj02(48.8566, 2.3522) == (48.8566, 2.3522)
    assert gcj02_to_wgs84(-33.86, 151.21) == (-33.86, 151.21)


def test_great_circle_uses_the_contracts_mean_radius() -> None:
    quarter_meridian = great_circle_m(0.0, 0.0, 90.0, 0.0)
    assert quarter_meridian == pytest.approx(EARTH_RADIUS_M * math.pi / 2, rel=1e-12)


def test_great_circle_is_symmetric_and_zero_on_the_same_point() -> None:
    assert great_circle_m(27.24, 111.46, 27.24, 111.46) == 0.0
    assert great_circle_m(27.24, 111.46, 27.25, 111.47) == pytest.approx(great_circle_m(27.25, 111.47, 27.24, 111.46))


def test_great_circle_crosses_the_antimeridian_the_short_way() -> None:
    assert great_circle_m(0.0, 179.999, 0.0, -179.999) == pytest.approx(EARTH_RADIUS_M * math.radians(0.002), rel=1e-9)


LATITUDES = st.floats(min_value=-89.0, max_value=89.0)
LONGITUDES = st.floats(min_value=-180.0, max_value=180.0)


@given(lat1=LATITUDES, lon1=LONGITUDES, lat2=LATITUDES, lon2=LONGITUDES)
def test_the_north_south_bound_is_never_above_the_great_circle(
    lat1: float, lon1: float, lat2: float, lon2: float
) -> None:
    """The simulator and move-up rule points out with it before the great circle, so it must never be the longer
    (to a nanometre: the haversine's squared sine underflows to zero for points 1e-154 degrees apart)."""
    assert north_south_m(lat1, lat2) <= great_circle_m(lat1, lon1, lat2, lon2) + 1e-9


def test_the_north_south_bound_is_within_a_millionth_of_a_meridian_arc() -> None:
    assert north_south_m(27.0, 28.0) == pytest.approx(great_circle_m(27.0, 111.5, 28.0, 111.5), rel=1e-6)


def test_h3_cell_is_a_resolution_9_hex_string_containing_the_point() -> None:
    cell = h3_cell(27.2418, 111.4672)
    assert h3.is_valid_cell(cell)
    assert h3.get_resolution(cell) == 9
    assert cell == h3.latlng_to_cell(27.2418, 111.4672, 9)


@given(
    lat=st.floats(allow_nan=True, allow_infinity=True) | st.floats(min_value=-90, max_value=90),
    lon=st.floats(allow_nan=True, allow_infinity=True) | st.floats(min_value=-180, max_value=180),
    resolution=st.integers(-2, 17),
)
def test_the_compiled_h3_cell_answers_or_refuses_as_h3_does(lat: float, lon: float, resolution: int) -> None:
    try:
        expected: object = h3.latlng_to_cell(lat, lon, resolution)
    except h3.H3BaseException as e:
        expected = type(e)
    try:
        actual: object = _h3_cell.cell(lat, lon, resolution)
    except h3.H3BaseException as e:
        actual = type(e)
    assert actual == expected
