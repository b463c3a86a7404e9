"""A simulated city, read from a city file a user can replace (`--city FILE`; the format is in the README and in
`shared/city.py`; the default, `cities/shaoyang.json`, is laid out by `services/simulator/shaoyang.py`): platforms
and rural stations with their crews, zones of the four classes, a street network with speeds and rush hours, dead
spots without mobile coverage, and where and when 110 calls come from. Plus the rules its vehicles move by.

Time is an input everywhere; randomness comes from the caller's `random.Random`, so a seed replays a night.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path

from services.simulator.roads import Leg, RoadNetwork, RushHour
from shared.city import CityFile, KindEntry, PlatformEntry, read_city_file
from shared.contract.registry import Platform, RegistryImport, Unit, UnitKind
from shared.errors import KuaijingError
from shared.geo import M_PER_DEGREE_LATITUDE, great_circle_m, north_south_m

DEFAULT_CITY = Path(__file__).resolve().parent / "cities" / "shaoyang.json"

CATEGORIES = ("theft", "traffic accident", "dispute", "assault", "noise", "missing person", "fraud", "fire")


def offset(lat: float, lon: float, *, north_m: float, east_m: float) -> tuple[float, float]:
    return lat + north_m / M_PER_DEGREE_LATITUDE, lon + east_m / (M_PER_DEGREE_LATITUDE * math.cos(math.radians(lat)))


@dataclass(frozen=True, slots=True)
class DeadSpot:
    """Where terminals lose the mobile network: what they fix there they upload when they are out again."""

    name: str
    centre: tuple[float, float]
    radius_m: float

    def covers(self, lat: float, lon: float) -> bool:
        if north_south_m(lat, self.centre[0]) > self.radius_m:
            return False
        return great_circle_m(lat, lon, *self.centre) <= self.radius_m


class City:
    """A city file, checked and ready to drive in."""

    def __init__(self, document: CityFile) -> None:
        self.document = document
        self.name = document.name
        self.utc_offset = timedelta(hours=document.utc_offset_hours)
        roads = document.roads
        rush = [RushHour(_hour(r.from_), _hour(r.to), r.factor, frozenset(r.classes)) for r in roads.rush_hours]
        for r in rush:
            if unknown := r.classes - set(roads.speeds_kmh):
                raise KuaijingError(f"rush hours name road classes with no speed: {', '.join(sorted(unknown))}")
        self.roads = RoadNetwork(roads.nodes, roads.roads, roads.speeds_kmh, rush)
        if cut_off := self.roads.unreachable_from(0):
            raise KuaijingError(f"{len(cut_off)} road nodes are not connected to the rest (first: node {cut_off[0]})")
        missing = {kind for p in document.platforms for kind, n in p.crew.items() if n} - set(document.kinds)
        if missing:
            raise KuaijingError(f"kinds: no speeds for {', '.join(sorted(missing))}")
        calls = document.calls
        if unknown_profiles := {a.profile for a in calls.areas} - set(calls.profiles):
            raise KuaijingError(f"calls: areas name unknown profiles: {', '.join(sorted(unknown_profiles))}")
        self.dead_spots = tuple(DeadSpot(d.name, (d.lat, d.lon), d.radius_m) for d in document.dead_spots)
        self._hourly = [[a.weight * calls.profiles[a.profile][h] for a in calls.areas] for h in range(24)]
        daily_mean = sum(sum(h) for h in self._hourly) / 24
        if daily_mean <= 0:
            raise KuaijingError("calls: every profile is zero all day")
        self._rate_factor = [sum(h) / daily_mean for h in self._hourly]
        self._patrol_nodes = {p.id: self._nodes_near(p) for p in document.platforms}

    @classmethod
    def load(cls, path: Path = DEFAULT_CITY) -> City:
        """Reads and checks a city file; what is wrong with it is one `KuaijingError` naming the file."""
        document = read_city_file(path)
        try:
            return cls(document)
        except KuaijingError as e:
            raise KuaijingError(f"the city file {path}: {e}") from e

    def registry(self) -> RegistryImport:
        """Platforms, their units (ids `<platform>-NN`; terminal phone numbers by position) and zones."""
        platforms, units = [], []
        for p, entry in enumerate(self.document.platforms):
            platforms.append(Platform(id=entry.id, name=entry.name, kind=entry.kind, lat=entry.lat, lon=entry.lon))
            serial = 0
            for kind in UnitKind:
                for _ in range(entry.crew.get(kind, 0)):
                    serial += 1
                    units.append(
                        Unit(id=f"{entry.id}-{serial:02d}", platform_id=entry.id, kind=kind,
                             callsign=f"{p + 1:02d}{serial:02d}", terminal_id=f"139{p + 1:04d}{serial:04d}")
                    )  # fmt: skip
        return RegistryImport(platforms=platforms, units=units, zones=list(self.document.zones))

    def latest_start(self, local_from: str, hours: float, now: datetime) -> datetime:
        """The latest moment the city's clock read `local_from` (HH:MM) whose night of `hours` has ended (a minute
        ago at least, so no fix is ahead of the services' clocks): a night from a time of day, replayable."""
        latest = now - timedelta(hours=hours, minutes=1) + self.utc_offset
        hour, minute = (int(part) for part in local_from.split(":"))
        start = latest.replace(hour=hour, minute=minute, second=0, microsecond=0)
        if start > latest:
            start -= timedelta(days=1)
        return start - self.utc_offset

    def local_hour(self, at: datetime) -> float:
        local = at + self.utc_offset
        return local.hour + local.minute / 60 + local.second / 3600

    def call_rate_factor(self, at: datetime) -> float:
        """The call rate at `at` as a multiple of the day's mean rate."""
        return self._rate_factor[int(self.local_hour(at)) % 24]

    def call_location(self, at: datetime, rng: random.Random) -> tuple[float, float]:
        """Where a call made at `at` comes from: an area drawn by its weight at that hour, a point within it."""
        areas = self.document.calls.areas
        area = rng.choices(areas, weights=self._hourly[int(self.local_hour(at)) % 24])[0]
        distance, angle = area.radius_m * math.sqrt(rng.random()), rng.uniform(0, 2 * math.pi)
        return offset(area.lat, area.lon, north_m=distance * math.cos(angle), east_m=distance * math.sin(angle))

    def vehicles(self, rng: random.Random) -> list[Vehicle]:
        """Every unit of the registry, on a road of its platform's patrol area."""
        fleet = []
        kinds = self.document.kinds
        for unit in self.registry().units:
            lat, lon = self.roads.nodes[rng.choice(self._patrol_nodes[unit.platform_id])]
            fleet.append(Vehicle(unit.id, unit.kind, unit.platform_id, lat, lon, speeds=kinds[unit.kind]))
        return fleet

    def patrol_route(self, vehicle: Vehicle, at: datetime, rng: random.Random) -> list[Leg]:
        """Along the streets to a junction of the vehicle's patrol area, drawn at random."""
        goal = self.roads.nodes[rng.choice(self._patrol_nodes[vehicle.platform_id])]
        return self.roads.route((vehicle.lat, vehicle.lon), goal, self.local_hour(at))

    def response_route(self, vehicle: Vehicle, goal: tuple[float, float], at: datetime) -> list[Leg]:
        return self.roads.route((vehicle.lat, vehicle.lon), goal, self.local_hour(at))

    def in_dead_spot(self, lat: float, lon: float) -> bool:
        return any(spot.covers(lat, lon) for spot in self.dead_spots)

    def _nodes_near(self, platform: PlatformEntry) -> list[int]:
        near = [
            i
            for i, node in enumerate(self.roads.nodes)
            if great_circle_m(platform.lat, platform.lon, *node) <= platform.patrol_radius_m
        ]
        return near or [self.roads.nearest_node(platform.lat, platform.lon)]


def _hour(hh_mm: str) -> float:
    hours, minutes = hh_mm.split(":")
    return int(hours) + int(minutes) / 60


class Task(StrEnum):
    PATROL = "patrol"
    RESPONDING = "responding"
    ON_SCENE = "on_scene"


@dataclass
class Vehicle:
    unit_id: str
    kind: UnitKind
    platform_id: str
    lat: float
    lon: float
    speeds: KindEntry
    heading: float = 0.0
    speed_kmh: float = 0.0
    task: Task = Task.PATROL
    target: tuple[float, float] | None = None
    call_id: str | None = None
    clear_at: datetime | None = None
    seq: int = 0
    route: list[Leg] = field(default_factory=list)
    """What is left of the way to the current goal, leg by leg."""
    pace: float = 1.0
    """This trip's share of the kind's speed (patrols dawdle, each at its own pace)."""
    posted_until: datetime | None = None
    """Moved up to a post by the operator: it drives there and waits until then, instead of patrolling on."""

    def step(self, dt_s: float, road_kmh: Callable[[str | None], float]) -> None:
        """Drive for `dt_s` seconds along the route, each leg at its road's speed (`road_kmh` of its class)."""
        if self.task is Task.ON_SCENE or not self.route:
            self.speed_kmh = 0.0
            return
        factor = (self.speeds.respond if self.task is Task.RESPONDING else self.speeds.patrol) * self.pace
        left_s, travelled, lat, lon = dt_s, 0.0, self.lat, self.lon
        heading = self.heading
        while left_s > 0 and self.route:
            leg = self.route[0]
            speed_ms = road_kmh(leg.road_class) * factor / 3.6
            remaining = great_circle_m(lat, lon, leg.lat, leg.lon)
            if remaining > 0.5:
                heading = _bearing(lat, lon, leg.lat, leg.lon)
            if remaining <= speed_ms * left_s:
                left_s -= remaining / speed_ms
                travelled += remaining
                lat, lon = leg.lat, leg.lon
                self.route.pop(0)
                continue
            share = speed_ms * left_s / remaining
            lat, lon = lat + (leg.lat - lat) * share, lon + (leg.lon - lon) * share
            travelled += speed_ms * left_s
            left_s = 0
        # Microdegrees, as JT/T 808 carries them, so every transport reports the same point.
        self.lat, self.lon = round(lat, 6), round(lon, 6)
        self.heading = heading
        self.speed_kmh = travelled / dt_s * 3.6 if dt_s else 0.0

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


def _bearing(lat: float, lon: float, to_lat: float, to_lon: float) -> float:
    north = to_lat - lat
    east = (to_lon - lon) * math.cos(math.radians(lat))
    return math.degrees(math.atan2(east, north)) % 360
