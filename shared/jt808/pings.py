"""Locations as the contract's position and video pings."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timezone

from shared.jt808.bodies import BEIDOU_USED, GALILEO_USED, GLONASS_USED, GPS_USED, Location
from shared.jt808.messages import GMT8, Jt808Error


def gnss_of(status: int) -> str | None:
    gps, bds = bool(status & GPS_USED), bool(status & BEIDOU_USED)
    if gps and bds:
        return "BDS+GPS"
    if bds:
        return "BDS"
    if gps:
        return "GPS"
    if status & GLONASS_USED:
        return "GLONASS"
    if status & GALILEO_USED:
        return "GALILEO"
    return None


def position_ping(location: Location, *, unit_id: str, clock: timezone = GMT8) -> dict[str, object]:
    """The contract's position ping for one location; raises `Jt808Error` when it cannot be one."""
    if abs(location.latitude) > 90:
        swapped = abs(location.longitude) <= 90
        hint = ": latitude and longitude look swapped" if swapped else ""
        raise Jt808Error(f"latitude {location.latitude} is out of range{hint}")
    ts = location.time_utc(clock)
    if ts is None:
        raise Jt808Error("location has no time (all-zero BCD)")
    ping: dict[str, object] = {
        "kind": "position",
        "unit_id": unit_id,
        "ts": ts.isoformat(),
        "lat": location.latitude,
        "lon": location.longitude,
        "speed_kmh": location.speed_kmh,
        "heading_deg": location.course if 0 <= location.course < 360 else None,
        "altitude_m": float(location.altitude_m),
        "fix": location.positioned,
    }
    if (gnss := gnss_of(location.status)) is not None:
        ping["gnss"] = gnss
    if (satellites := location.satellites) is not None:
        ping["satellites"] = satellites
    return ping


def video_pings(location: Location, *, unit_id: str, clock: timezone = GMT8) -> Iterator[dict[str, object]]:
    """Video pings for channels the JT/T 1078 items flag: signal lost -> `offline`, occluded -> `fault`."""
    if 0x15 not in location.extras and 0x16 not in location.extras:
        return
    ts = location.time_utc(clock)
    if ts is None:
        return
    lost = location.video_alarm_word(0x15) or 0
    occluded = location.video_alarm_word(0x16) or 0
    for bit in range(32):
        mask = 1 << bit
        if lost & mask or occluded & mask:
            yield {
                "kind": "video",
                "unit_id": unit_id,
                "ts": ts.isoformat(),
                "channel": bit + 1,
                "state": "offline" if lost & mask else "fault",
            }
