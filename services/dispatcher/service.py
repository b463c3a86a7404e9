"""The dispatcher's use cases: the live map, nearest units, the registry and the call lifecycle, over its ports.

The service is the only door to the dispatcher's state: routes, consumers and the composition root call its
methods and never reach into the live map, the store or the hub. Every change follows one order: decide (pure
rules), commit with its outbox records, apply to memory, publish to live subscribers, kick the outbox. A lock
serialises decisions so two consoles cannot assign one unit twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TypeVar

import h3.api.basic_int as h3i

from services.dispatcher.domain import calls as rules
from services.dispatcher.domain.calls import Call, CallEvent, CallStatus, Decision, StatusChange
from services.dispatcher.domain.coverage import (
    CoverageArea,
    CoverageHour,
    CoverageSnapshot,
    cells_of,
    coverage_areas,
    measure,
    summarise,
)
from services.dispatcher.domain.eta import CircuityEta, EtaModel, EtaQuery, eta_s
from services.dispatcher.domain.h3_index import ByDistance, Found
from services.dispatcher.domain.live_map import LiveMap, Position, UnitFilter, UnitState
from services.dispatcher.domain.move_up import MOVE_UP_CLASSES, Demand, Idle, advise, demand_of
from services.dispatcher.domain.speed_profiles import LearnedEta, ProfileRules, SpeedProfiles
from services.dispatcher.domain.zones import ZoneMap, validate_geometry
from services.dispatcher.events import EventHub, LiveEvent
from services.dispatcher.messages import (
    advice_message,
    call_event_message,
    call_event_of,
    live_position,
    unit_status_message,
)
from services.dispatcher.ports import Believed, DispatchStore, Outbox, StaleStateError
from shared.contract.registry import Platform, RegistryImport, Unit, UnitKind, Zone, ZoneClass
from shared.contract.schemas import (
    AdviceMessage,
    CallEventKind,
    CallEventMessage,
    EventSource,
    PositionRecord,
    UnitStatus,
    UnitStatusEvent,
)
from shared.errors import ConflictError, NotFoundError

log = logging.getLogger(__name__)

_ATTEMPTS = 2
"""A decision refused because another replica got there first is made once more from refreshed memory."""

_SLICE_S = 0.005
"""The longest background work (coverage, move-up advice) holds the event loop before letting calls through."""

_C = TypeVar("_C", Call, Call | None)


class _LoopShare:
    """Background work's turns: `turn` lets the event loop go once `_SLICE_S` has passed since it last did."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._began = self._loop.time()

    async def turn(self) -> None:
        if self._loop.time() - self._began >= _SLICE_S:
            await asyncio.sleep(0)
            self._began = self._loop.time()


class Order(StrEnum):
    ETA = "eta"
    DISTANCE = "distance"


@dataclass(frozen=True)
class DispatchRules:
    arrival_radius_m: float = 100.0
    max_position_age_s: float = 120.0
    recommendations: int = 5


@dataclass(frozen=True)
class EtaLearning:
    """Speed profiles learned from the fleet's drives to calls of the last `history`, rebuilt every `every_s`."""

    history: timedelta = timedelta(days=28)
    every_s: float = 3600.0
    rules: ProfileRules = field(default_factory=ProfileRules)


@dataclass(frozen=True)
class CoverageWatch:
    """Coverage measured every `every_s` seconds; a sample kept for reports every `sample_s` of the service's clock
    (at instants on that grid, so replicas keep the same samples once)."""

    every_s: float = 10.0
    sample_s: float = 60.0


@dataclass(frozen=True)
class MoveUpRules:
    """Move-up advice after each dispatch, when the key areas or the central city are below `level` covered."""

    level: float = 0.8
    max_moves: int = 3
    candidates_per_cell: int = 4
    """Units considered per watched cell, best by ETA first: any k >= 2 keeps the advice exact (`move_up.advise`)."""
    shown_for_s: float = 600.0
    """How long advice stays in `GET /v1/advice` unless the unit is sent elsewhere or advised anew."""


@dataclass(frozen=True, slots=True)
class Recommendation:
    """A unit recommended for a location, rounded as consoles show it (mm, 0.1 s, ms)."""

    unit_id: str
    platform_id: str
    kind: UnitKind
    distance_m: float
    eta_s: float
    position_age_s: float


@dataclass(frozen=True, slots=True)
class NewCall:
    lat: float
    lon: float
    category: str
    priority: int
    call_id: str | None = None
    received_at: datetime | None = None
    address: str | None = None
    note: str | None = None
    auto_assign: bool = False


@dataclass(frozen=True, slots=True)
class CallCreated:
    call: Call
    created: bool
    recommendations: list[Recommendation]
    assigned_unit_id: str | None


class EtaRanking:
    """Ranks by ETA: distance times the model's seconds per metre for the unit (its kind, where it is)."""

    def __init__(self, eta: EtaModel, query: EtaQuery) -> None:
        self._rate, self._query = eta.seconds_per_metre, query
        self._by_kind = eta.rates_by_kind(query)
        self.min_weight = eta.least_seconds_per_metre(query)

    def weight(self, entry: UnitState) -> float:
        if self._by_kind is not None:
            return self._by_kind[entry.kind]
        position = entry.position
        origin = self._query.destination if position is None else (position.lat, position.lon)
        return self._rate(entry.kind, origin, self._query)


class DispatchService:
    def __init__(
        self,
        *,
        store: DispatchStore,
        outbox: Outbox,
        hub: EventHub,
        eta: CircuityEta,
        rules: DispatchRules,
        learning: EtaLearning | None = None,
        move_up: MoveUpRules | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        event_time: bool = False,
    ) -> None:
        """`event_time`: "now" is the newest fix on the live map, not `clock` (a replay, or a simulated night
        played faster than real time, whose positions are all in the past). `eta` is the configured model; with
        `learning`, the learned one replaces it once built (falling back to it where it has seen too little)."""
        self._store = store
        self._outbox = outbox
        self._hub = hub
        self._configured_eta = eta
        self._eta: EtaModel = eta
        self._learning = learning
        self.profiles: SpeedProfiles | None = None
        """The speed profiles in force, when learning."""
        self._move_up = move_up
        self._demand: list[Demand] = []
        self._advice_due = asyncio.Event()
        self._dispatched_call: str | None = None
        self._rules = rules
        self._live_map = LiveMap()
        self.clock: Callable[[], datetime] = (lambda: self._live_map.newest or clock()) if event_time else clock
        self._zones = ZoneMap()
        self._coverage_areas: list[CoverageArea] = []
        self._coverage: CoverageSnapshot | None = None
        self._open_calls: dict[str, Call] = {}
        self._registry_revision = 0
        """The registry revision the live map and zones reflect."""
        self._lock = asyncio.Lock()

    # state

    async def load(self) -> None:
        """Rebuild memory from PostgreSQL: registry, statuses, newest positions, open calls."""
        await self.reload_registry()
        for call in await self._store.open_calls():
            self._hold(call)
        log.info(
            "live map loaded: %s units (%s with a position), %s zones, %s open calls, H3 resolution %s",
            len(self._live_map.units),
            sum(1 for u in self._live_map.units.values() if u.position),
            len(self._zones),
            len(self._open_calls),
            self._live_map.resolution,
        )

    async def reload_registry(self) -> None:
        # Read the revision first: a change landing during the load moves it again, so the next poll reloads.
        revision = await self._store.registry_revision()
        stored = await self._store.units()
        definitions = await self._store.zone_definitions()
        zones, areas = ZoneMap(definitions), coverage_areas(definitions)
        demand = demand_of(areas)
        async with self._lock:
            for s in stored:
                unit = self._live_map.upsert_unit(
                    unit_id=s.unit.id,
                    platform_id=s.unit.platform_id,
                    kind=s.unit.kind,
                    callsign=s.unit.callsign,
                    terminal_id=s.unit.terminal_id,
                )
                if s.position is not None:
                    self._live_map.apply_position(unit.unit_id, s.position)
                if s.status_since is not None:
                    self._live_map.apply_status(unit.unit_id, s.status, s.call_id, s.status_since)
            self._live_map.remove_units_not_in(s.unit.id for s in stored)
            self._live_map.reindex_for_fleet()
            self._zones, self._coverage_areas, self._coverage, self._demand = zones, areas, None, demand
            self._registry_revision = revision

    async def follow_registry(self, poll_s: float) -> None:
        """Registry writes made elsewhere (the import command, another replica) reach the live map too; writes made
        through this service have already been loaded and are not loaded twice."""
        while True:
            await asyncio.sleep(poll_s)
            if await self._store.registry_revision() != self._registry_revision:
                await self.reload_registry()

    async def learn_eta(self) -> SpeedProfiles:
        """Rebuild the speed profiles from the drives of the learning window and put them in force."""
        assert self._learning is not None, "learning is not configured"
        now = self.clock()
        trips = await self._store.completed_trips(since=now - self._learning.history)
        profiles = SpeedProfiles.build(trips, built_at=now, rules=self._learning.rules)
        self._eta, self.profiles = LearnedEta(profiles, self._configured_eta), profiles
        log.info("ETA learned from %s drives to calls: %s cells with a speed profile", profiles.trips, profiles.cells)
        return profiles

    async def follow_eta_learning(self) -> None:
        """Relearn on a schedule: the fleet's newest drives count, the oldest leave the window."""
        assert self._learning is not None, "learning is not configured"
        while True:
            await self.learn_eta()
            await asyncio.sleep(self._learning.every_s)

    @property
    def eta_model(self) -> EtaModel:
        return self._eta

    # coverage

    def measure_coverage(self, now: datetime | None = None) -> CoverageSnapshot:
        """Coverage now, by the ETA model in force, of every zone and class; kept as the latest."""
        at = now or self.clock()
        self._coverage = measure(self._coverage_areas, self._best_eta_s(at), at)
        return self._coverage

    async def measure_coverage_in_slices(self) -> CoverageSnapshot:
        """`measure_coverage` with the event loop let go every `_SLICE_S` of work. A measurement is a
        nearest search per cell: tens of milliseconds for a city's few hundred cells, which in one piece stalled
        every call and position arriving meanwhile, every `coverage_every_s`. The snapshot is of its start; the
        units may move during it, as they may during any measurement."""
        at, areas = self.clock(), self._coverage_areas
        best_eta_s, share = self._best_eta_s(at), _LoopShare()
        etas: dict[int, float | None] = {}
        for cell in cells_of(areas):
            etas[cell] = best_eta_s(cell)
            await share.turn()
        self._coverage = summarise(areas, etas, at)
        return self._coverage

    def _best_eta_s(self, at: datetime) -> Callable[[int], float | None]:
        fresh = UnitFilter(max_age_s=self._rules.max_position_age_s)

        def best_eta_s(cell: int) -> float | None:
            lat, lon = h3i.cell_to_latlng(cell)
            query = EtaQuery((lat, lon), at, self._zones.classify(lat=lat, lon=lon))
            found = self._live_map.nearest(
                lat=lat, lon=lon, k=1, now=at, unit_filter=fresh, ranking=EtaRanking(self._eta, query)
            )
            return found[0].score if found else None

        return best_eta_s

    def coverage(self) -> CoverageSnapshot:
        """The latest coverage measured (measured now if none is)."""
        return self._coverage or self.measure_coverage()

    async def follow_coverage(self, watch: CoverageWatch) -> None:
        """Measure coverage on a schedule and keep a sample at each instant of the sampling grid it passes."""
        last_sample: datetime | None = None
        while True:
            snapshot = await self.measure_coverage_in_slices()
            epoch = snapshot.at.timestamp()
            grid = datetime.fromtimestamp(epoch - epoch % watch.sample_s, UTC)
            if grid != last_sample:
                await self._store.record_coverage(replace(snapshot, at=grid))
                last_sample = grid
            await asyncio.sleep(watch.every_s)

    async def coverage_history(self, *, since: datetime, until: datetime) -> list[CoverageHour]:
        return await self._store.coverage_history(since=since, until=until)

    # move-up advice

    def _dispatched(self, call_id: str) -> None:
        """A unit was sent: coverage may have fallen; advice follows, off the request's path."""
        if self._move_up is not None:
            self._dispatched_call = call_id
            self._advice_due.set()

    async def follow_dispatches(self) -> None:
        """Advise after dispatches; a burst of them while advice is being worked out gets one more round."""
        while True:
            await self._advice_due.wait()
            self._advice_due.clear()
            await self.advise_move_up(self._dispatched_call)

    async def advise_move_up(self, call_id: str | None = None) -> list[AdviceMessage]:
        """Which idle units should move where, recorded with its outbox record to `kuaijing.advice`; a move that is
        the unit's standing advice already is not advised again."""
        rules = self._move_up
        if rules is None or not self._demand:
            return []
        at = self.clock()
        fresh = UnitFilter(max_age_s=self._rules.max_position_age_s)
        candidates: dict[str, Idle] = {}
        share = _LoopShare()  # a search per watched cell: tens of milliseconds for a city, after every dispatch
        for cell in self._demand:
            await share.turn()
            ranking = EtaRanking(self._eta, EtaQuery(cell.centre, at, cell.zone_class))
            k = rules.candidates_per_cell
            for found in self._live_map.nearest(
                lat=cell.centre[0], lon=cell.centre[1], k=k, now=at, unit_filter=fresh, ranking=ranking
            ):
                unit = found.entry
                if (p := unit.position) is not None:
                    watched = self._zones.classify(lat=p.lat, lon=p.lon) in MOVE_UP_CLASSES
                    candidates[unit.unit_id] = Idle(unit.unit_id, unit.kind, (p.lat, p.lon), movable=watched)
        advice = advise(
            list(candidates.values()), self._demand, self._eta, at, level=rules.level, max_moves=rules.max_moves
        )
        standing = {m.unit_id: m.to_cell for m in await self.advice()}
        messages = [
            advice_message(
                f"A-{at:%Y%m%d%H%M%S}-{uuid.uuid4().hex[:8]}",
                move,
                advice,
                platform_id=self._live_map.units[move.unit_id].platform_id,
                at=at,
                call_id=call_id,
            )
            for move in advice.moves
            if standing.get(move.unit_id) != h3i.int_to_str(move.post_cell)
        ]
        if messages:
            await self._store.record_advice(messages)
            self._outbox.kick()
            log.info(
                "move-up advised after %s: %s", call_id, ", ".join(f"{m.unit_id} to {m.to_cell}" for m in messages)
            )
        return messages

    async def advice(self, since: datetime | None = None) -> list[AdviceMessage]:
        """The newest advice per unit still available, newest first, since `since` (default: `shown_for_s` ago)."""
        shown_for = 0.0 if self._move_up is None else self._move_up.shown_for_s
        messages = await self._store.advice(since=since or self.clock() - timedelta(seconds=shown_for))
        newest: dict[str, AdviceMessage] = {}
        for message in sorted(messages, key=lambda m: m.ts, reverse=True):
            newest.setdefault(message.unit_id, message)
        units = self._live_map.units
        return [
            m
            for m in newest.values()
            if (unit := units.get(m.unit_id)) is not None and unit.status is UnitStatus.AVAILABLE
        ]

    async def import_registry(self, document: RegistryImport) -> dict[str, int]:
        """Upsert a registry document; every unit's platform must exist or come with it, every zone be valid."""
        if document.units:
            known = {p.id for p in await self._store.platforms()} | {p.id for p in document.platforms}
            for index, unit in enumerate(document.units):
                if unit.platform_id not in known:
                    raise NotFoundError(f"no platform {unit.platform_id!r}", field=f"units.{index}.platform_id")
        for zone in document.zones:
            validate_geometry(zone.geometry_json())
        counts = await self._store.import_registry(document)
        await self.reload_registry()
        return counts

    async def register_unit(self, unit: Unit) -> None:
        """One unit, put by id: its platform must exist already."""
        await self.platform(unit.platform_id)
        await self.import_registry(RegistryImport(units=[unit]))

    # registry queries

    async def platforms(self) -> list[Platform]:
        return await self._store.platforms()

    async def platform(self, platform_id: str) -> Platform:
        found = await self._store.platforms(platform_id)
        if not found:
            raise NotFoundError(f"no platform {platform_id!r}", field="platform_id")
        return found[0]

    async def zones(self) -> list[Zone]:
        return await self._store.zones()

    async def zone(self, zone_id: str) -> Zone:
        found = await self._store.zones(zone_id)
        if not found:
            raise NotFoundError(f"no zone {zone_id!r}", field="zone_id")
        return found[0]

    def units(self, *, platform_id: str | None = None) -> list[UnitState]:
        """Every unit on the live map (of one platform), by id."""
        units = sorted(self._live_map.units.values(), key=lambda u: u.unit_id)
        return [u for u in units if platform_id is None or u.platform_id == platform_id]

    def fleet_counts(self, now: datetime) -> tuple[int, int]:
        """(online, offline) units: read when metrics are scraped."""
        online = sum(1 for unit in self._live_map.units.values() if self.online(unit, now))
        return online, len(self._live_map.units) - online

    @property
    def open_call_count(self) -> int:
        return len(self._open_calls)

    def open_call(self, call_id: str) -> Call | None:
        """The call as this replica holds it in memory, if it is open."""
        return self._open_calls.get(call_id)

    # live feed

    def subscribe(self) -> AbstractAsyncContextManager[asyncio.Queue[LiveEvent]]:
        """A bounded queue of live `position`, `status` and `call` events, until the block ends."""
        return self._hub.subscribe()

    @property
    def subscribers(self) -> int:
        return self._hub.subscribers

    # queries

    def unit(self, unit_id: str) -> UnitState:
        unit = self._live_map.units.get(unit_id)
        if unit is None:
            raise NotFoundError(field="unit_id", error=f"no unit {unit_id!r}")
        return unit

    def online(self, unit: UnitState, now: datetime) -> bool:
        return unit.online(now, self._rules.max_position_age_s)

    def nearest(
        self,
        *,
        lat: float,
        lon: float,
        k: int,
        unit_filter: UnitFilter,
        order: Order,
        now: datetime,
        zone_class: ZoneClass | None = None,
    ) -> list[Recommendation]:
        query = EtaQuery((lat, lon), now, zone_class or self._zones.classify(lat=lat, lon=lon))
        ranking = ByDistance() if order is Order.DISTANCE else EtaRanking(self._eta, query)
        found = self._live_map.nearest(lat=lat, lon=lon, k=k, now=now, unit_filter=unit_filter, ranking=ranking)
        return [self._recommendation(f, query) for f in found]

    def _recommendation(self, found: Found[UnitState], query: EtaQuery) -> Recommendation:
        unit = found.entry
        position = unit.position
        origin = query.destination if position is None else (position.lat, position.lon)
        position_ts = query.at if position is None else position.ts
        return Recommendation(
            unit_id=unit.unit_id,
            platform_id=unit.platform_id,
            kind=unit.kind,
            distance_m=round(found.distance_m, 3),
            eta_s=round(eta_s(self._eta, unit.kind, origin, query, found.distance_m), 1),
            position_age_s=round(max(0.0, (query.at - position_ts).total_seconds()), 3),
        )

    async def calls(
        self, *, status: CallStatus | None, received_from: datetime | None, received_to: datetime | None, limit: int
    ) -> list[Call]:
        return await self._store.calls(status=status, received_from=received_from, received_to=received_to, limit=limit)

    async def call(self, call_id: str) -> Call:
        call = self._open_calls.get(call_id) or await self._store.call(call_id)
        if call is None:
            raise NotFoundError(field="call_id", error=f"no call {call_id!r}")
        return call

    # changes

    async def create_call(self, request: NewCall) -> CallCreated:
        # Freshness and an auto-assignment are judged at the call's own time: a call entered late (or a simulated
        # night replayed fast) gets the units that were available when it was received.
        now = request.received_at or self.clock()
        call_id = request.call_id or f"C-{now:%Y%m%d}-{uuid.uuid4().hex[:10]}"
        existing = self._open_calls.get(call_id)
        if existing is not None:
            return CallCreated(existing, False, [], None)
        # Only a decision that moves a unit needs the lock; a plain new call commits concurrently with others
        # (its call_id's uniqueness is the database's job), so a busy night does not queue behind one commit.
        guard: AbstractAsyncContextManager[object] = self._lock if request.auto_assign else contextlib.nullcontext()
        async with guard:
            zone_class = self._zones.classify(lat=request.lat, lon=request.lon)
            call = Call(
                call_id=call_id,
                received_at=now,
                lat=request.lat,
                lon=request.lon,
                category=request.category,
                priority=request.priority,
                zone_class=zone_class,
                target_s=self._zones.target_s(zone_class),
                address=request.address,
                note=request.note,
            )
            for attempt in range(_ATTEMPTS):
                recommendations = self.nearest(
                    lat=call.lat,
                    lon=call.lon,
                    k=self._rules.recommendations,
                    unit_filter=UnitFilter(max_age_s=self._rules.max_position_age_s),
                    order=Order.ETA,
                    now=now,
                    zone_class=zone_class,
                )
                decision = rules.created(call)
                assigned: str | None = None
                if request.auto_assign and recommendations:
                    assigned = recommendations[0].unit_id
                    unit = self._live_map.units[assigned]
                    decision = decision.then(rules.assign(call, unit, ts=now, source=EventSource.AUTO))
                believed = self._believed(decision)
                try:
                    created = await self._store.create_call(call, decision, believed)
                except StaleStateError:
                    if attempt + 1 == _ATTEMPTS:
                        raise
                    await self._refresh(believed)  # another replica took the unit first: recommend again
                    continue
                break
            if not created:
                raced = await self._store.call(call_id)
                assert raced is not None
                return CallCreated(raced, False, [], None)
            self._open_calls[call.call_id] = call
            self._apply(decision)
        self._outbox.kick()
        if assigned is not None:
            self._dispatched(call.call_id)
        return CallCreated(call, True, recommendations, assigned)

    async def assign(self, call_id: str, unit_id: str, *, ts: datetime | None) -> Call:
        async def decide() -> tuple[Call, Decision]:
            call = await self._open_call(call_id)
            return call, rules.assign(call, self.unit(unit_id), ts=ts or self.clock(), source=EventSource.CONSOLE)

        async with self._lock:
            call, _ = await self._commit(decide)
        self._outbox.kick()
        self._dispatched(call.call_id)
        return call

    async def close_call(self, call_id: str, *, ts: datetime | None) -> Call:
        """`rules.close` the call. Closing a closed call again changes nothing and answers the call: a console that
        retries after a lost answer is told what happened, not refused (the check is under the lock, so a retry
        racing its original on one replica is answered so too)."""

        async def decide() -> tuple[Call, Decision]:
            call = await self._open_call(call_id)
            return call, rules.close(call, ts=ts or self.clock(), source=EventSource.CONSOLE)

        async with self._lock:
            call = await self.call(call_id)
            if call.status is CallStatus.CLOSED:
                return call
            call, _ = await self._commit(decide)
        self._outbox.kick()
        return call

    async def set_status(
        self, unit_id: str, status: UnitStatus, *, call_id: str | None, ts: datetime | None
    ) -> UnitState:
        async def decide() -> tuple[Call | None, Decision]:
            unit = self.unit(unit_id)
            related = call_id or unit.call_id
            call = await self._open_call(related) if related else None
            return call, rules.change_status(unit, status, call=call, ts=ts or self.clock(), source=EventSource.CONSOLE)

        async with self._lock:
            await self._commit(decide)
        self._outbox.kick()
        return self.unit(unit_id)

    async def _commit(self, decide: Callable[[], Awaitable[tuple[_C, Decision]]]) -> tuple[_C, Decision]:
        """Decide from memory and record the decision with what it was based on. When another replica changed a
        unit or closed a call first, the store refuses; memory is refreshed from it and the decision made once
        more, which then refuses with the real reason (the unit is busy, the call is closed) or goes through."""
        for attempt in range(_ATTEMPTS):
            call, decision = await decide()
            believed = self._believed(decision)
            try:
                await self._store.record({} if call is None else {call.call_id: call}, decision, believed)
            except StaleStateError:
                if attempt + 1 == _ATTEMPTS:
                    raise
                await self._refresh(believed)
                continue
            self._apply(decision)
            return call, decision
        raise AssertionError("unreachable")

    def _believed(self, decision: Decision) -> Believed:
        units = self._live_map.units
        return Believed(
            statuses={c.unit_id: (units[c.unit_id].status, units[c.unit_id].status_since) for c in decision.statuses},
            open_calls={
                call_id: frozenset(call.assigned)
                for call_id in {e.call_id for e in decision.events if e.event is not CallEventKind.CREATED}
                - {e.call_id for e in decision.events if e.event is CallEventKind.CREATED}
                if (call := self._open_calls.get(call_id)) is not None
            },
        )

    async def _refresh(self, believed: Believed) -> None:
        """Bring what a refused decision was based on up to date from the store."""
        for change in await self._store.unit_statuses(list(believed.statuses)):
            self._apply_status(change)
        for call_id in believed.open_calls:
            stored = await self._store.call(call_id)
            if stored is None or stored.status is CallStatus.CLOSED:
                self._open_calls.pop(call_id, None)
            else:
                await self._adopt(stored)

    async def _open_call(self, call_id: str) -> Call:
        """The open call from memory, or from the store when another replica created it and this one has not heard
        of it yet."""
        call = self._open_calls.get(call_id)
        if call is not None:
            return call
        stored = await self._store.call(call_id)
        if stored is None:
            raise NotFoundError(field="call_id", error=f"no call {call_id!r}")
        if stored.status is CallStatus.CLOSED:
            raise ConflictError(f"call {call_id} is closed")
        return await self._adopt(stored)

    async def _adopt(self, call: Call) -> Call:
        """Hold an open call another replica created. Its units' statuses are read with it: they come on another
        topic and may not have reached this replica yet, and they say which assigned units are still on it."""
        for change in await self._store.unit_statuses(list(call.assigned)):
            self._apply_status(change)
        return self._hold(call)

    def _hold(self, call: Call) -> Call:
        """Keep an open call read from the store in memory, with the units the live map has on it."""
        call.assigned = {
            unit_id: ts
            for unit_id, ts in call.assigned.items()
            if (unit := self._live_map.units.get(unit_id)) is not None and unit.call_id == call.call_id
        }
        self._open_calls[call.call_id] = call
        return call

    def _apply(self, decision: Decision) -> None:
        for event in decision.events:
            call = self._open_calls[event.call_id]
            if call.apply(event):
                self._publish_call_event(call, event)
            if event.event is CallEventKind.CLOSED:
                self._open_calls.pop(call.call_id, None)
        for change in decision.statuses:
            self._apply_status(change)

    def _apply_status(self, change: StatusChange) -> None:
        unit = self._live_map.units.get(change.unit_id)
        if unit is None:
            return
        previous_call = unit.call_id
        if not self._live_map.apply_status(change.unit_id, change.status, change.call_id, change.ts):
            return
        if previous_call and previous_call != change.call_id and previous_call in self._open_calls:
            self._open_calls[previous_call].release(change.unit_id)
        self._hub.publish("status", lambda: unit_status_message(change).model_dump(mode="json"))

    def _publish_call_event(self, call: Call, event: CallEvent) -> None:
        self._hub.publish("call", lambda: call_event_message(call, event).model_dump(mode="json"), once=_key(event))

    # consumed events

    async def on_position(self, record: PositionRecord) -> None:
        position = Position(record.ts, record.lat, record.lon, record.speed_kmh, record.heading_deg)
        if self._live_map.apply_position(record.unit_id, position, fix=record.fix):
            self._hub.position(record.unit_id, lambda: live_position(record))
            unit = self._live_map.units[record.unit_id]
        else:
            # The fix the map holds, heard again, still gets its arrival checked: when recording the arrival failed
            # (PostgreSQL down) the tail reads the record again, and a unit on scene may send nothing newer.
            held = self._live_map.units.get(record.unit_id)
            if held is None or held.position != position:
                return
            unit = held
        if unit.call_id is None or unit.call_id not in self._open_calls:
            return
        async with self._lock:
            call = self._open_calls.get(unit.call_id or "")
            if call is None:
                return
            decision = rules.gps_arrival(call, unit, position, radius_m=self._rules.arrival_radius_m)
            if decision is None:
                return
            believed = self._believed(decision)
            try:
                await self._store.record({call.call_id: call}, decision, believed)
            except StaleStateError:
                # Every replica sees the same positions: another one recorded this arrival (or a newer status) first.
                await self._refresh(believed)
                return
            self._apply(decision)
        log.info("unit %s arrived at call %s (GPS)", unit.unit_id, call.call_id)
        self._outbox.kick()

    def on_unit_status(self, event: UnitStatusEvent) -> None:
        """A status from the topic (this or another replica): applied in event time, idempotently."""
        self._apply_status(StatusChange(event.unit_id, event.status, event.call_id, event.ts))

    async def on_call_event(self, message: CallEventMessage) -> None:
        """A call event from the topic (this or another replica): the open call it belongs to is updated (read
        from the store the first time this replica hears of it) and live subscribers see it once."""
        event = call_event_of(message)
        async with self._lock:
            call = self._open_calls.get(message.call_id)
            if call is None and message.event is not CallEventKind.CLOSED:
                stored = await self._store.call(message.call_id)
                if stored is not None and stored.status is CallStatus.OPEN:
                    call = await self._adopt(stored)
            if call is None:
                self._hub.publish("call", lambda: message.model_dump(mode="json"), once=_key(event))
                return
            call.apply(event)
            self._publish_call_event(call, event)
            if event.event is CallEventKind.CLOSED:
                self._open_calls.pop(call.call_id, None)


def _key(event: CallEvent) -> tuple[str, str, str | None, datetime]:
    """Names a call event however often it is heard: from this replica's decision and again from the topic. Made of
    strings and a datetime only, so the collector stops tracking the tuple at its first pass (an enum member in it
    would keep it tracked for as long as the hub remembers it)."""
    return event.call_id, event.event.value, event.unit_id, event.ts
