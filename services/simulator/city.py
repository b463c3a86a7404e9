"""A simulated city (modelled on Shaoyang: 33 fast-response platforms, each with a command car, two patrol cars and
four motorcycles) and the rules its vehicles move by. Plain Python, driven by `services/simulator/runner.py`.

Time is an input everywhere; randomness comes from the caller's `random.Random`, so a seed replays a night.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from shared.contract.registry import Platform, PlatformKind, RegistryImport, Unit, UnitKind, Zone, ZoneClass
from shared.geo import great_circle_m

CENTRE = (27.2418, 111.4672)
"""Shaoyang, Hunan: the city centre the simulation is laid out around."""

_M_PER_DEG_LAT = 111_195.0

PLATFORM_CREW: tuple[tuple[UnitKind, int], ...] = (
    (UnitKind.COMMAND_CAR, 1),
    (UnitKind.PATROL_CAR, 2),
    (UnitKind.MOTORCYCLE, 4),
)

PATROL_KMH = {UnitKind.COMMAND_CAR: 25.0, UnitKind.PATROL_CAR: 30.0, UnitKind.MOTORCYCLE: 22.0}
RESPONSE_KMH = {UnitKind.COMMAND_CAR: 45.0, UnitKind.PATROL_CAR: 50.0, UnitKind.MOTORCYCLE: 40.0}

CATEGORIES = ("theft", "traffic accident", "dispute", "assault", "noise", "missing person", "fraud", "fire")


def offset(lat: float, lon: float, *, north_m: float, east_m: float) -> tuple[float, float]:
    return lat + north_m / _M_PER_DEG_LAT, lon + east_m / (_M_PER_DEG_LAT * math.cos(math.radians(lat)))


def square(centre: tuple[float, float], half_m: float) -> dict[str, Any]:
    south, west = offset(*centre, north_m=-half_m, east_m=-half_m)
    north, east = offset(*centre, north_m=half_m, east_m=half_m)
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    return {"type": "Polygon", "coordinates": [ring]}


def city_registry(*, platforms: int = 33, rng: random.Random) -> RegistryImport:
    """Platforms on rings around the centre, seven vehicles each, and zones for the 1-3-5-15 targets."""
    platform_list, units = [], []
    for p in range(platforms):
        ring = 0 if p < 5 else (1 if p < 17 else 2)
        radius = (1_200, 4_500, 9_000)[ring] * rng.uniform(0.8, 1.2)
        angle = 2 * math.pi * p / platforms + rng.uniform(-0.1, 0.1)
        lat, lon = offset(*CENTRE, north_m=radius * math.cos(angle), east_m=radius * math.sin(angle))
        platform_id = f"SY-{p + 1:02d}"
        platform_list.append(
            Platform(id=platform_id, name=f"邵阳快警平台 {p + 1}", kind=PlatformKind.FAST_RESPONSE, lat=lat, lon=lon)
        )
        serial = 0
        for kind, count in PLATFORM_CREW:
            for _ in range(count):
                serial += 1
                units.append(
                    Unit(
                        id=f"{platform_id}-{serial:02d}",
                        platform_id=platform_id,
                        kind=kind,
                        callsign=f"{p + 1:02d}{serial:02d}",
                        terminal_id=f"1390{p + 1:03d}{serial:04d}",
                    )
                )
    key_areas = [offset(*CENTRE, north_m=n, east_m=e) for n, e in ((0, 0), (1_800, -900), (-1_500, 1_400))]
    zones = [
        Zone(id="urban", geometry=square(CENTRE, 11_000), **{"class": ZoneClass.OTHER_URBAN}),
        Zone(id="central", geometry=square(CENTRE, 3_500), **{"class": ZoneClass.CENTRAL_URBAN}),
        *(
            Zone(id=f"key-{i + 1}", geometry=square(centre, 400), **{"class": ZoneClass.KEY_AREA})
            for i, centre in enumerate(key_areas)
        ),
    ]
    return RegistryImport(platforms=platform_list, units=units, zones=zones)


class Task(StrEnum):
    PATROL = "patrol"
    RESPONDING = "responding"
    ON_SCENE = "on_scene"


@dataclass
class Vehicle:
    unit_id: str
    kind: UnitKind
    base: tuple[float, float]
    lat: float
    lon: float
    heading: float = 0.0
    speed_kmh: float = 0.0
    task: Task = Task.PATROL
    target: tuple[float, float] | None = None
    call_id: str | None = None
    clear_at: datetime | None = None
    seq: int = 0
    waypoint: tuple[float, float] | None = field(default=None)

    def step(self, dt_s: float, rng: random.Random) -> None:
        """Move for `dt_s` seconds: patrols wander near the base, responders head straight for their call."""
        if self.task is Task.ON_SCENE:
            self.speed_kmh = 0.0
            return
        if self.task is Task.RESPONDING and self.target is not None:
            goal, speed = self.target, RESPONSE_KMH[self.kind]
        else:
            if self.waypoint is None or great_circle_m(self.lat, self.lon, *self.waypoint) < 30:
                self.waypoint = offset(
                    *self.base, north_m=rng.uniform(-1_500, 1_500), east_m=rng.uniform(-1_500, 1_500)
                )
            goal, speed = self.waypoint, PATROL_KMH[self.kind] * rng.uniform(0.6, 1.2)
        remaining = great_circle_m(self.lat, self.lon, *goal)
        travel = min(remaining, speed / 3.6 * dt_s)
        north = (goal[0] - self.lat) * _M_PER_DEG_LAT
        east = (goal[1] - self.lon) * _M_PER_DEG_LAT * math.cos(math.radians(self.lat))
        norm = math.hypot(north, east) or 1.0
        lat, lon = offset(self.lat, self.lon, north_m=north / norm * travel, east_m=east / norm * travel)
        # Microdegrees, as JT/T 808 carries them, so every transport reports the same point.
        self.lat, self.lon = round(lat, 6), round(lon, 6)
        self.heading = math.degrees(math.atan2(east, north)) % 360
        self.speed_kmh = travel / dt_s * 3.6 if dt_s else 0.0

    def position_ping(self, ts: datetime, *, satellites: int) -> dict[str, object]:
        """What the vehicle's terminal reports, in the contract's shape (heading in [0, 360), even when rounded)."""
        return {
            "kind": "position",
            "unit_id": self.unit_id,
            "ts": ts.isoformat(),
            "lat": self.lat,
            "lon": self.lon,
            "speed_kmh": round(self.speed_kmh, 1),
            "heading_deg": round(self.heading, 1) % 360,
            "gnss": "BDS+GPS",
            "satellites": satellites,
            "hdop": 0.9,
            "seq": self.seq,
        }

    def arrived(self, radius_m: float = 30.0) -> bool:
        return self.target is not None and great_circle_m(self.lat, self.lon, *self.target) <= radius_m


def vehicles_of(registry: RegistryImport, rng: random.Random) -> list[Vehicle]:
    bases = {p.id: (p.lat, p.lon) for p in registry.platforms}
    fleet = []
    for unit in registry.units:
        base = bases[unit.platform_id]
        lat, lon = offset(*base, north_m=rng.uniform(-800, 800), east_m=rng.uniform(-800, 800))
        fleet.append(Vehicle(unit.id, unit.kind, base, lat, lon))
    return fleet


@dataclass(frozen=True, slots=True)
class DeadSpot:
    """Where terminals lose the mobile network: what they fix there they upload when they are out again."""

    name: str
    centre: tuple[float, float]
    radius_m: float

    def covers(self, lat: float, lon: float) -> bool:
        return great_circle_m(lat, lon, *self.centre) <= self.radius_m


DEAD_SPOTS = (
    DeadSpot("资江隧道 Zijiang tunnel", offset(*CENTRE, north_m=2_500, east_m=-1_500), 450.0),
    DeadSpot("双清公园山地 Shuangqing park hills", offset(*CENTRE, north_m=-2_200, east_m=2_600), 600.0),
    DeadSpot("城南桥下 under the south bridge", offset(*CENTRE, north_m=-4_000, east_m=-800), 400.0),
)


def call_location(rng: random.Random) -> tuple[float, float]:
    """Calls cluster where people are: most within a few kilometres of the centre, a few out in the countryside."""
    distance = rng.uniform(11500, 16000) if rng.random() < 0.1 else min(rng.expovariate(1 / 2500), 10500)
    angle = rng.uniform(0, 2 * math.pi)
    return offset(*CENTRE, north_m=distance * math.cos(angle), east_m=distance * math.sin(angle))
