"""A night in the simulated city, in simulated time: a tick every `TICK_S` seconds of event time, in which the
vehicles move and report, 110 calls arrive, a console operator sends the nearest patrolling vehicle, responders
arrive and clear. Plain Python and deterministic: the same registry, start and seed give the same ticks whatever
the speed they are played at, so every figure the services compute in event time is the same at any speed-up.

The night also keeps its own record of every call (received, unit sent, arrived), judged the way the dispatcher
judges a GPS arrival: the first fix within `ARRIVAL_RADIUS_M` of the call after the unit was assigned.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol

from services.simulator.city import CATEGORIES, City, Task, Vehicle
from shared.contract.registry import UnitKind
from shared.geo import great_circle_m

TICK_S = 2.0
VIDEO_EVERY_REPORTS = 15
REPORT_EVERY_TICKS = 5
"""A patrolling vehicle reports every 10 s, as terminals commonly do; one on a call reports every tick."""
STANDING_REPORT_EVERY_TICKS = 15
"""A JT/T 808 terminal standing at a scene reports every 30 s and keeps its link alive with a heartbeat (0x0002)
every `REPORT_EVERY_TICKS` in between."""
CAMERA_FAULT_EVERY = 7
"""Every 7th JT/T 808 vehicle's rear camera (channel 2) has lost its signal: its terminal flags it on the video
reports (JT/T 1078 item 0x15), which ingest turns into `offline` video pings."""
REAR_CAMERA = 1 << 1
ARRIVAL_RADIUS_M = 100.0
"""The dispatcher's default GPS arrival radius (`KUAIJING_ARRIVAL_RADIUS_M`)."""
READ_S = (5.0, 40.0)
"""How long the operator takes to read a call before dispatching."""
ON_SCENE_S = (60.0, 240.0)
POST_HOLD_S = 1200.0
"""A vehicle moved up to a post waits there this long (unless sent), then patrols its own area again."""


@dataclass(frozen=True, slots=True)
class NewCall:
    call_id: str
    lat: float
    lon: float
    category: str
    priority: int
    received_at: datetime


@dataclass(frozen=True, slots=True)
class Assign:
    call_id: str
    unit_id: str
    ts: datetime


@dataclass(frozen=True, slots=True)
class Clear:
    call_id: str
    unit_id: str
    ts: datetime


Action = NewCall | Assign | Clear


@dataclass
class CallRecord:
    """What the simulation knows happened to a call, to hold the services' figures against."""

    call_id: str
    lat: float
    lon: float
    received_at: datetime
    unit_id: str | None = None
    assigned_at: datetime | None = None
    arrived_at: datetime | None = None
    cleared_at: datetime | None = None

    def as_json(self) -> dict[str, object]:
        def iso(ts: datetime | None) -> str | None:
            return None if ts is None else ts.isoformat()

        return {
            "call_id": self.call_id, "lat": self.lat, "lon": self.lon, "received_at": iso(self.received_at),
            "unit_id": self.unit_id, "assigned_at": iso(self.assigned_at), "arrived_at": iso(self.arrived_at),
            "cleared_at": iso(self.cleared_at),
        }  # fmt: skip


@dataclass
class Drive:
    """A vehicle's drive to a call as its terminal reported it: every fix from the dispatch to the arrival."""

    call_id: str
    unit_id: str
    kind: UnitKind
    destination: tuple[float, float]
    fixes: list[tuple[datetime, float, float]]
    arrived_at: datetime | None = None


class Operator(Protocol):
    """The console operator's choices: which free vehicle goes to a call, and which idle ones move up where."""

    def choose(self, call: CallRecord, free: Sequence[Vehicle], now: datetime) -> Vehicle: ...

    def move_up(self, idle: Sequence[Vehicle], now: datetime) -> list[tuple[Vehicle, tuple[float, float]]]:
        """After a dispatch: vehicles to send to a new post (none: stay on patrol)."""
        ...


class NearestByStraightLine:
    """What vehicle-location systems offer: the free vehicle closest as the crow flies; no moving up."""

    def choose(self, call: CallRecord, free: Sequence[Vehicle], now: datetime) -> Vehicle:
        return min(free, key=lambda v: (great_circle_m(v.lat, v.lon, call.lat, call.lon), v.unit_id))

    def move_up(self, idle: Sequence[Vehicle], now: datetime) -> list[tuple[Vehicle, tuple[float, float]]]:
        return []


class Transport(StrEnum):
    """How a vehicle's terminal reaches Kuaijing, as in the field: a third are JT/T 808 terminals over TCP, a sixth
    come through another system on the raw topic, the rest post over HTTP."""

    JT808 = "jt808"
    KAFKA = "kafka"
    HTTP = "http"


_TRANSPORT_CYCLE = (Transport.JT808, Transport.JT808, Transport.KAFKA, Transport.HTTP, Transport.HTTP, Transport.HTTP)


def transport_of(index: int) -> Transport:
    return _TRANSPORT_CYCLE[index % 6]


@dataclass(frozen=True, slots=True)
class Report:
    """What one vehicle's terminal sends at a tick. Plain data, taken when the tick is made, so a tick can still be
    on its way while the night moves on."""

    unit_id: str
    transport: Transport
    pings: tuple[dict[str, object], ...]
    """This tick's fix (and now and then the video state)."""
    late: tuple[dict[str, object], ...] = ()
    """Fixes held while out of coverage, uploaded now, oldest first (JT/T 808: 0x0704 blind-area upload)."""
    heartbeat: bool = False
    """A JT/T 808 terminal with nothing to report says it is alive (no pings)."""
    video_lost: int = 0
    """JT/T 808: the channels (bit 0 = channel 1) whose video signal is lost, flagged on this fix."""


@dataclass
class Tick:
    at: datetime
    reports: list[Report]

    @property
    def pings(self) -> list[dict[str, object]]:
        return [p for r in self.reports for p in (*r.late, *r.pings)]

    actions: list[Action] = field(default_factory=list)
    """What the consoles and crews do at `at`, after the fixes of this tick."""


class Night:
    def __init__(
        self,
        city: City,
        *,
        start: datetime,
        hours: float,
        call_every_s: float,
        seed: int,
        operator: Operator | None = None,
    ) -> None:
        """The calls (when, where, what, how long the operator reads and the crew stays) come from a random stream
        of their own, so the same seed brings the same calls whichever vehicles an operator sends."""
        self._rng = random.Random(seed)
        self._calls_rng = random.Random(f"calls-{seed}")
        self.operator: Operator = operator or NearestByStraightLine()
        self.drives: dict[str, Drive] = {}
        """call id -> the drive of the vehicle sent to it"""
        self._on_scene_s: dict[str, float] = {}
        self.city = city
        self.vehicles = {v.unit_id: v for v in city.vehicles(self._rng)}
        self.start, self.end = start, start + timedelta(hours=hours)
        self.now = start
        self.calls: dict[str, CallRecord] = {}
        self._call_every_s = call_every_s
        self._next_call = start + self._call_gap(start)
        self._to_dispatch: list[tuple[datetime, str]] = []
        self._ticks = 0
        self._held: dict[str, list[dict[str, object]]] = {}
        """unit id -> fixes taken out of coverage, not yet uploaded"""
        self._on_call: dict[str, str] = {}
        """unit id -> the call it is on"""

    @property
    def progress(self) -> float:
        return (self.now - self.start) / (self.end - self.start)

    def ticks(self) -> Iterator[Tick]:
        while self.now + timedelta(seconds=TICK_S) <= self.end:
            yield self.tick()

    def tick(self) -> Tick:
        self.now += timedelta(seconds=TICK_S)
        self._ticks += 1
        now = self.now
        road_kmh = self.city.roads.speeds_at(self.city.local_hour(now)).__getitem__
        for vehicle in self.vehicles.values():
            if vehicle.posted_until is not None and vehicle.posted_until <= now:
                vehicle.posted_until = None
            if vehicle.task is Task.PATROL and not vehicle.route and vehicle.posted_until is None:
                vehicle.route = self.city.patrol_route(vehicle, now, self._rng)
                vehicle.pace = self._rng.uniform(0.7, 1.1)
            vehicle.step(TICK_S, road_kmh)
            if vehicle.task is Task.RESPONDING and vehicle.call_id in self.drives:
                self.drives[vehicle.call_id].fixes.append((now, vehicle.lat, vehicle.lon))
        tick = Tick(now, [])
        for index, vehicle in enumerate(self.vehicles.values()):
            transport = transport_of(index)
            if not self._reports(vehicle, index, transport):
                if transport is Transport.JT808 and (self._ticks + index) % REPORT_EVERY_TICKS == 0:
                    tick.reports.append(Report(vehicle.unit_id, transport, (), heartbeat=True))
                continue
            vehicle.seq += 1
            held = self._held.setdefault(vehicle.unit_id, [])
            if vehicle.task is Task.PATROL and self.city.in_dead_spot(vehicle.lat, vehicle.lon):
                held.append(vehicle.position_ping(now, satellites=9 + vehicle.seq % 10))
                continue
            late, self._held[vehicle.unit_id] = tuple(held), []
            pings = tuple(_pings(vehicle, now, transport))
            camera_down = transport is Transport.JT808 and index % CAMERA_FAULT_EVERY == 0
            lost = REAR_CAMERA if camera_down and vehicle.seq % VIDEO_EVERY_REPORTS == 1 else 0
            tick.reports.append(Report(vehicle.unit_id, transport, pings, late, video_lost=lost))
        for vehicle in self.vehicles.values():
            if vehicle.task is Task.RESPONDING and vehicle.target is not None:
                if great_circle_m(vehicle.lat, vehicle.lon, *vehicle.target) <= ARRIVAL_RADIUS_M:
                    call_id = self._on_call[vehicle.unit_id]
                    self.calls[call_id].arrived_at = self.drives[call_id].arrived_at = now
                    vehicle.task = Task.ON_SCENE
                    vehicle.clear_at = now + timedelta(seconds=self._on_scene_s.pop(call_id))
            elif vehicle.task is Task.ON_SCENE and vehicle.clear_at is not None and vehicle.clear_at <= now:
                call_id = self._on_call.pop(vehicle.unit_id)
                self.calls[call_id].cleared_at = now
                tick.actions.append(Clear(call_id, vehicle.unit_id, now))
                vehicle.task, vehicle.target, vehicle.call_id, vehicle.clear_at = Task.PATROL, None, None, None
                vehicle.route = []
        while self._next_call <= now:
            tick.actions.append(self._new_call(now))
            self._next_call += self._call_gap(self._next_call)
        tick.actions += self._dispatch_due(now)
        return tick

    def post(self, unit_id: str, post: tuple[float, float], at: datetime) -> bool:
        """Move a patrolling vehicle up to `post`, where it waits `POST_HOLD_S` unless sent; False (and nothing done)
        for a vehicle on a call or not of this city."""
        vehicle = self.vehicles.get(unit_id)
        if vehicle is None or vehicle.task is not Task.PATROL:
            return False
        vehicle.route, vehicle.pace = self.city.response_route(vehicle, post, at), 1.0
        vehicle.posted_until = at + timedelta(seconds=POST_HOLD_S)
        return True

    def _call_gap(self, at: datetime) -> timedelta:
        """Time to the next call: exponential, at the city's rate for the hour of `at`."""
        rate = self.city.call_rate_factor(at) / self._call_every_s
        return timedelta(seconds=self._calls_rng.expovariate(rate))

    def _reports(self, vehicle: Vehicle, index: int, transport: Transport) -> bool:
        """Whether the vehicle sends a fix this tick: on a call every tick (JT/T 808 terminals standing at the
        scene every `STANDING_REPORT_EVERY_TICKS`), on patrol every `REPORT_EVERY_TICKS`."""
        if vehicle.task is Task.RESPONDING:
            return True
        if vehicle.task is Task.ON_SCENE:
            every = STANDING_REPORT_EVERY_TICKS if transport is Transport.JT808 else 1
            return (self._ticks + index) % every == 0
        return (self._ticks + index) % REPORT_EVERY_TICKS == 0

    def _new_call(self, now: datetime) -> NewCall:
        rng = self._calls_rng
        lat, lon = self.city.call_location(now, rng)
        call = NewCall(
            call_id=f"SIM-{self.start:%Y%m%d%H%M%S}-{len(self.calls) + 1:05d}",
            lat=round(lat, 6),
            lon=round(lon, 6),
            category=rng.choice(CATEGORIES),
            priority=rng.choice((1, 2, 2, 3)),
            received_at=now,
        )
        self.calls[call.call_id] = CallRecord(call.call_id, call.lat, call.lon, now)
        self._to_dispatch.append((now + timedelta(seconds=rng.uniform(*READ_S)), call.call_id))
        self._on_scene_s[call.call_id] = rng.uniform(*ON_SCENE_S)
        return call

    def _dispatch_due(self, now: datetime) -> list[Action]:
        """The operator sends a patrolling vehicle of its choice; a call nobody is free for waits for the next tick.
        After a dispatch the operator may move idle vehicles up to new posts, where they stay until sent."""
        actions: list[Action] = []
        dispatched = False
        waiting = []
        for due, call_id in self._to_dispatch:
            if due > now:
                waiting.append((due, call_id))
                continue
            call = self.calls[call_id]
            free = [v for v in self.vehicles.values() if v.task is Task.PATROL]
            if not free:
                waiting.append((due, call_id))
                continue
            vehicle = self.operator.choose(call, free, now)
            vehicle.task, vehicle.target, vehicle.call_id = Task.RESPONDING, (call.lat, call.lon), call_id
            vehicle.posted_until = None
            self.drives[call_id] = Drive(
                call_id, vehicle.unit_id, vehicle.kind, (call.lat, call.lon), [(now, vehicle.lat, vehicle.lon)]
            )
            dispatched = True
            vehicle.route, vehicle.pace = self.city.response_route(vehicle, (call.lat, call.lon), now), 1.0
            self._on_call[vehicle.unit_id] = call_id
            call.unit_id, call.assigned_at = vehicle.unit_id, now
            actions.append(Assign(call_id, vehicle.unit_id, now))
        self._to_dispatch = waiting
        if dispatched:
            idle = [v for v in self.vehicles.values() if v.task is Task.PATROL]
            for vehicle, post in self.operator.move_up(idle, now):
                self.post(vehicle.unit_id, post, now)
        return actions


def _pings(vehicle: Vehicle, at: datetime, transport: Transport) -> list[dict[str, object]]:
    pings = [vehicle.position_ping(at, satellites=9 + vehicle.seq % 10)]
    if vehicle.seq % VIDEO_EVERY_REPORTS == 1 and transport is not Transport.JT808:
        pings.append(
            {"kind": "video", "unit_id": vehicle.unit_id, "ts": at.isoformat(), "channel": 1, "state": "streaming",
             "bitrate_kbps": 1800, "fps": 25, "resolution": "1280x720", "codec": "H.264", "network": "4G",
             "signal_dbm": -70 - vehicle.seq % 30}
        )  # fmt: skip
    return pings
