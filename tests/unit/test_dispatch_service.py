"""The dispatcher service over in-memory fakes of its ports: the lifecycle rules the integration suite checks
through Kafka and PostgreSQL, here without either, so a broken rule fails in milliseconds with its name."""

from __future__ import annotations

import asyncio
import gc
from datetime import UTC, datetime, timedelta

import pytest

from services.dispatcher.domain.calls import Call, CallStatus, Decision
from services.dispatcher.domain.eta import CircuityEta
from services.dispatcher.domain.speed_profiles import ProfileRules
from services.dispatcher.events import EventHub
from services.dispatcher.messages import call_event_message, unit_status_message
from services.dispatcher.ports import Believed
from services.dispatcher.service import DispatchRules, DispatchService, EtaLearning, MoveUpRules, NewCall
from shared.contract.registry import Platform, PlatformKind, Polygon, RegistryImport, Unit, UnitKind, Zone, ZoneClass
from shared.contract.schemas import CallEventKind, PositionRecord, Source, UnitStatus
from shared.errors import ConflictError, InvalidError, NotFoundError, UnavailableError
from shared.geo import h3_cell
from tests.unit.fakes import FakeDispatchStore, FakeOutbox
from tests.unit.test_speed_profiles import drive

T0 = datetime(2026, 11, 30, 20, 0, tzinfo=UTC)
CENTRE = (27.2400, 111.4700)
KEY_AREA = Zone.model_validate(
    {
        "id": "Z-KEY",
        "class": "key_area",
        "geometry": Polygon(
            type="Polygon",
            coordinates=[[[111.46, 27.23], [111.48, 27.23], [111.48, 27.25], [111.46, 27.25], [111.46, 27.23]]],
        ),
    }
)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def registry() -> RegistryImport:
    return RegistryImport(
        platforms=[Platform(id="P1", name="Platform 1", kind=PlatformKind.FAST_RESPONSE, lat=CENTRE[0], lon=CENTRE[1])],
        units=[Unit(id=f"U{i}", platform_id="P1", kind=UnitKind.PATROL_CAR, callsign=f"{i:04d}") for i in range(1, 4)],
        zones=[KEY_AREA],
    )


def ping(unit_id: str, lat: float, lon: float, ts: datetime) -> PositionRecord:
    return PositionRecord(
        unit_id=unit_id,
        ts=ts,
        lat=lat,
        lon=lon,
        platform_id="P1",
        h3=h3_cell(lat, lon),
        source=Source.HTTP,
        received_at=ts,
    )


async def started(
    store: FakeDispatchStore, clock: Clock, learning: EtaLearning | None = None, move_up: MoveUpRules | None = None
) -> DispatchService:
    service = DispatchService(
        store=store,
        outbox=FakeOutbox(),
        hub=EventHub(),
        eta=CircuityEta(),
        rules=DispatchRules(recommendations=3),
        clock=clock,
        learning=learning,
        move_up=move_up,
    )
    await service.load()
    return service


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def store() -> FakeDispatchStore:
    fake = FakeDispatchStore()
    await fake.import_registry(registry())
    return fake


@pytest.fixture
async def service(store: FakeDispatchStore, clock: Clock) -> DispatchService:
    service = await started(store, clock)
    # U1 100 m north of the centre, U2 1 km north, U3 3 km north: all online now.
    for unit_id, metres in (("U1", 100), ("U2", 1_000), ("U3", 3_000)):
        await service.on_position(ping(unit_id, CENTRE[0] + metres / 111_195, CENTRE[1], T0 - timedelta(seconds=5)))
    return service


def call_at_centre(**extra: object) -> NewCall:
    return NewCall(lat=CENTRE[0], lon=CENTRE[1], category="theft", priority=1, **extra)  # type: ignore[arg-type]


async def test_a_new_call_takes_its_zone_s_target_recommends_the_nearest_available_units_and_is_recorded(
    service: DispatchService, store: FakeDispatchStore
) -> None:
    created = await service.create_call(call_at_centre())
    assert (created.call.zone_class, created.call.target_s) == (ZoneClass.KEY_AREA, 60)
    assert [r.unit_id for r in created.recommendations] == ["U1", "U2", "U3"]
    assert created.recommendations[0].distance_m == pytest.approx(100, abs=1)
    assert store.events_of(created.call.call_id) == [CallEventKind.CREATED]


async def test_a_call_out_of_every_zone_is_rural(service: DispatchService) -> None:
    created = await service.create_call(NewCall(lat=27.5, lon=111.9, category="fire", priority=2))
    assert (created.call.zone_class, created.call.target_s) == (ZoneClass.RURAL, 900)


async def test_a_repeated_call_id_answers_the_existing_call_and_records_nothing_more(
    service: DispatchService, store: FakeDispatchStore
) -> None:
    first = await service.create_call(call_at_centre(call_id="C-1"))
    again = await service.create_call(call_at_centre(call_id="C-1"))
    assert (first.created, again.created, again.recommendations) == (True, False, [])
    assert store.events_of("C-1") == [CallEventKind.CREATED]


async def test_auto_assign_dispatches_the_best_recommendation(
    service: DispatchService, store: FakeDispatchStore
) -> None:
    created = await service.create_call(call_at_centre(auto_assign=True))
    assert created.assigned_unit_id == "U1"
    assert store.events_of(created.call.call_id) == [CallEventKind.CREATED, CallEventKind.ASSIGNED]
    assert service.unit("U1").status is UnitStatus.DISPATCHED
    assert store.units_["U1"].status is UnitStatus.DISPATCHED


async def test_a_dispatched_unit_is_no_longer_recommended_nor_assignable(
    service: DispatchService, store: FakeDispatchStore
) -> None:
    first = await service.create_call(call_at_centre(auto_assign=True))
    second = await service.create_call(call_at_centre())
    assert [r.unit_id for r in second.recommendations] == ["U2", "U3"]
    with pytest.raises(ConflictError, match="not available"):
        await service.assign(second.call.call_id, "U1", ts=None)
    assert store.events_of(second.call.call_id) == [CallEventKind.CREATED]
    assert first.call.assigned.keys() == {"U1"}


async def test_the_last_unit_clearing_closes_the_call_and_frees_the_unit(
    service: DispatchService, store: FakeDispatchStore, clock: Clock
) -> None:
    call_id = (await service.create_call(call_at_centre())).call.call_id
    for seconds, step in (
        (20, None),
        (40, UnitStatus.EN_ROUTE),
        (90, UnitStatus.ON_SCENE),
        (600, UnitStatus.AVAILABLE),
    ):
        clock.now = T0 + timedelta(seconds=seconds)
        if step is None:
            await service.assign(call_id, "U2", ts=None)
        else:
            await service.set_status("U2", step, call_id=None, ts=None)
    assert store.events_of(call_id) == [
        CallEventKind.CREATED,
        CallEventKind.ASSIGNED,
        CallEventKind.EN_ROUTE,
        CallEventKind.ON_SCENE,
        CallEventKind.CLOSED,
    ]
    assert service.open_call(call_id) is None
    assert (service.unit("U2").status, service.unit("U2").call_id) == (UnitStatus.AVAILABLE, None)
    with pytest.raises(ConflictError, match="is closed"):
        await service.assign(call_id, "U3", ts=None)


async def test_gps_arrival_puts_the_assigned_unit_on_scene(
    service: DispatchService, store: FakeDispatchStore, clock: Clock
) -> None:
    call_id = (await service.create_call(call_at_centre())).call.call_id
    clock.now = T0 + timedelta(seconds=10)
    await service.assign(call_id, "U3", ts=None)
    await service.on_position(ping("U3", CENTRE[0] + 500 / 111_195, CENTRE[1], T0 + timedelta(seconds=60)))
    assert service.unit("U3").status is UnitStatus.DISPATCHED
    await service.on_position(ping("U3", CENTRE[0] + 50 / 111_195, CENTRE[1], T0 + timedelta(seconds=120)))
    assert service.unit("U3").status is UnitStatus.ON_SCENE
    [arrival] = [e for e in store.events if e.call_id == call_id and e.event is CallEventKind.ON_SCENE]
    assert (arrival.unit_id, arrival.ts, arrival.source) == ("U3", T0 + timedelta(seconds=120), "gps")


async def test_a_gps_arrival_that_failed_to_record_is_recorded_when_its_fix_is_read_again(
    service: DispatchService, store: FakeDispatchStore, clock: Clock
) -> None:
    """The positions tail reads a record again after applying it failed; the unit, on scene, sends nothing newer."""
    call_id = (await service.create_call(call_at_centre())).call.call_id
    clock.now = T0 + timedelta(seconds=10)
    await service.assign(call_id, "U3", ts=None)
    arrival = ping("U3", CENTRE[0] + 20 / 111_195, CENTRE[1], T0 + timedelta(seconds=90))
    store.down = True
    with pytest.raises(UnavailableError):
        await service.on_position(arrival)
    assert service.unit("U3").status is UnitStatus.DISPATCHED
    store.down = False
    await service.on_position(arrival)
    assert service.unit("U3").status is UnitStatus.ON_SCENE
    await service.on_position(arrival)
    assert store.events_of(call_id).count(CallEventKind.ON_SCENE) == 1


async def test_a_status_older_than_the_unit_s_current_one_is_refused(
    service: DispatchService, store: FakeDispatchStore
) -> None:
    await service.set_status("U1", UnitStatus.OFF_DUTY, call_id=None, ts=T0)
    with pytest.raises(ConflictError, match="before unit U1's current status"):
        await service.set_status("U1", UnitStatus.AVAILABLE, call_id=None, ts=T0 - timedelta(seconds=1))
    assert [s.status for s in store.statuses] == [UnitStatus.OFF_DUTY]


async def test_dispatched_without_a_call_is_invalid_and_unknown_ids_are_not_found(service: DispatchService) -> None:
    with pytest.raises(InvalidError, match="needs a call_id"):
        await service.set_status("U1", UnitStatus.DISPATCHED, call_id=None, ts=None)
    with pytest.raises(NotFoundError) as no_call:
        await service.assign("C-none", "U1", ts=None)
    assert no_call.value.field == "call_id"
    with pytest.raises(NotFoundError) as no_unit:
        service.unit("U-none")
    assert no_unit.value.field == "unit_id"


async def test_a_restarted_service_rebuilds_open_calls_and_statuses_from_the_store(
    service: DispatchService, store: FakeDispatchStore, clock: Clock
) -> None:
    call_id = (await service.create_call(call_at_centre(auto_assign=True))).call.call_id
    restarted = await started(store, clock)
    held = restarted.open_call(call_id)
    assert held is not None
    assert held.assigned.keys() == {"U1"}
    assert restarted.unit("U1").status is UnitStatus.DISPATCHED
    await restarted.set_status("U1", UnitStatus.EN_ROUTE, call_id=None, ts=T0 + timedelta(seconds=5))
    assert store.events_of(call_id)[-1] is CallEventKind.EN_ROUTE


async def test_a_registry_import_needs_every_unit_s_platform(service: DispatchService) -> None:
    orphan = Unit(id="U9", platform_id="P-none", kind=UnitKind.MOTORCYCLE, callsign="0009")
    with pytest.raises(NotFoundError) as refused:
        await service.import_registry(RegistryImport(units=[orphan]))
    assert refused.value.field == "units.0.platform_id"
    with pytest.raises(NotFoundError):
        await service.register_unit(orphan)
    assert "U9" not in {u.unit_id for u in service.units()}


async def test_a_unit_registered_elsewhere_is_on_the_map_once_the_registry_moves(
    service: DispatchService, store: FakeDispatchStore
) -> None:
    await store.import_registry(
        RegistryImport(units=[Unit(id="U9", platform_id="P1", kind=UnitKind.MOTORCYCLE, callsign="0009")])
    )
    assert "U9" not in {u.unit_id for u in service.units()}
    await service.reload_registry()
    assert "U9" in {u.unit_id for u in service.units(platform_id="P1")}


async def test_every_change_reaches_live_subscribers_and_kicks_the_outbox(service: DispatchService) -> None:
    async with service.subscribe() as queue:
        created = await service.create_call(call_at_centre(auto_assign=True))
        kinds = [queue.get_nowait() for _ in range(queue.qsize())]
    assert [(e.kind, e.data.get("event") or e.data.get("status")) for e in kinds] == [
        ("call", "created"),
        ("call", "assigned"),
        ("status", "dispatched"),
    ]
    assert kinds[0].data["call_id"] == created.call.call_id
    assert service.subscribers == 0


# Two replicas over one store: each decides from its own memory, the store refuses what another made stale.


@pytest.fixture
async def other(store: FakeDispatchStore, clock: Clock, service: DispatchService) -> DispatchService:
    """A second replica, started after the first one's positions were applied (it hears positions from the topic
    too, so it gets the same ones)."""
    replica = await started(store, clock)
    for unit in service.units():
        assert unit.position is not None
        await replica.on_position(
            ping(unit.unit_id, unit.position.lat, unit.position.lon, unit.position.ts + timedelta(microseconds=1))
        )
    return replica


async def test_a_call_created_on_one_replica_is_assignable_on_the_other(
    service: DispatchService, other: DispatchService, store: FakeDispatchStore
) -> None:
    call_id = (await service.create_call(call_at_centre())).call.call_id
    assert other.open_call(call_id) is None  # not heard of yet
    call = await other.assign(call_id, "U2", ts=None)
    assert call.assigned.keys() == {"U2"}
    assert store.events_of(call_id) == [CallEventKind.CREATED, CallEventKind.ASSIGNED]


async def test_a_unit_taken_by_one_replica_is_refused_by_the_other_with_the_real_reason(
    service: DispatchService, other: DispatchService, store: FakeDispatchStore
) -> None:
    first = (await service.create_call(call_at_centre())).call.call_id
    second = (await other.create_call(call_at_centre())).call.call_id
    await service.assign(first, "U1", ts=None)
    assert other.unit("U1").status is UnitStatus.AVAILABLE  # the status has not reached it yet
    with pytest.raises(ConflictError, match="not available"):
        await other.assign(second, "U1", ts=None)
    assert other.unit("U1").status is UnitStatus.DISPATCHED  # refreshed from the store
    assert [e.call_id for e in store.events if e.event is CallEventKind.ASSIGNED] == [first]


async def test_auto_assign_on_a_stale_replica_takes_the_next_best_unit(
    service: DispatchService, other: DispatchService, store: FakeDispatchStore
) -> None:
    await service.create_call(call_at_centre(auto_assign=True))
    created = await other.create_call(call_at_centre(auto_assign=True))
    assert created.assigned_unit_id == "U2"
    assert [e.unit_id for e in store.events if e.event is CallEventKind.ASSIGNED] == ["U1", "U2"]


async def test_a_gps_arrival_seen_by_both_replicas_is_recorded_once(
    service: DispatchService, other: DispatchService, store: FakeDispatchStore, clock: Clock
) -> None:
    call_id = (await service.create_call(call_at_centre())).call.call_id
    clock.now = T0 + timedelta(seconds=10)
    await service.assign(call_id, "U3", ts=None)
    for event in (e for e in store.events if e.call_id == call_id):
        await other.on_call_event(call_event_message(store.calls_[call_id], event))
    for change in store.statuses:
        other.on_unit_status(unit_status_message(change))
    arrival = ping("U3", CENTRE[0] + 20 / 111_195, CENTRE[1], T0 + timedelta(seconds=90))
    await service.on_position(arrival)
    await other.on_position(arrival)
    assert store.events_of(call_id).count(CallEventKind.ON_SCENE) == 1
    assert other.unit("U3").status is UnitStatus.ON_SCENE


async def test_another_replica_s_call_events_reach_this_one_s_subscribers_once(
    service: DispatchService, other: DispatchService, store: FakeDispatchStore
) -> None:
    call_id = (await service.create_call(call_at_centre(auto_assign=True))).call.call_id
    messages = [call_event_message(store.calls_[call_id], e) for e in store.events if e.call_id == call_id]
    async with other.subscribe() as queue:
        for message in messages + messages:  # the topic delivers at least once
            await other.on_call_event(message)
        heard = [queue.get_nowait() for _ in range(queue.qsize())]
    assert [e.data["event"] for e in heard if e.kind == "call"] == ["created", "assigned"]
    assert [(e.data["unit_id"], e.data["status"]) for e in heard if e.kind == "status"] == [("U1", "dispatched")]
    held = other.open_call(call_id)
    assert held is not None
    assert [e.event for e in held.timeline] == [CallEventKind.CREATED, CallEventKind.ASSIGNED]


async def test_a_replica_does_not_close_a_call_on_which_the_other_has_just_put_a_unit(
    service: DispatchService, other: DispatchService, store: FakeDispatchStore, clock: Clock
) -> None:
    call_id = (await service.create_call(call_at_centre())).call.call_id
    clock.now = T0 + timedelta(seconds=10)
    await service.assign(call_id, "U1", ts=None)
    clock.now = T0 + timedelta(seconds=20)
    await other.assign(call_id, "U2", ts=None)  # the first replica has not heard of it
    clock.now = T0 + timedelta(seconds=30)
    await service.set_status("U1", UnitStatus.AVAILABLE, call_id=None, ts=None)
    assert CallEventKind.CLOSED not in store.events_of(call_id)
    held = service.open_call(call_id)
    assert held is not None
    assert held.assigned.keys() == {"U2"}


async def test_a_call_given_its_received_at_is_recommended_and_auto_assigned_as_of_then(
    service: DispatchService, clock: Clock
) -> None:
    """A call entered late (or a night replayed fast) gets the units that were fresh when it came in."""
    clock.now = T0 + timedelta(hours=1)  # by the wall clock every fix is an hour old: nobody is fresh
    assert (await service.create_call(call_at_centre())).recommendations == []
    created = await service.create_call(call_at_centre(received_at=T0, auto_assign=True))
    assert created.assigned_unit_id == "U1"
    [assigned] = [e for e in created.call.timeline if e.event is CallEventKind.ASSIGNED]
    assert assigned.ts == T0


async def test_on_the_event_clock_now_is_the_newest_fix_on_the_live_map(store: FakeDispatchStore, clock: Clock) -> None:
    service = DispatchService(
        store=store, outbox=FakeOutbox(), hub=EventHub(), eta=CircuityEta(), rules=DispatchRules(), clock=clock,
        event_time=True,
    )  # fmt: skip
    await service.load()
    assert service.clock() == clock.now, "with no fix yet, the given clock"
    newest = T0 - timedelta(hours=2)
    await service.on_position(ping("U1", *CENTRE, newest - timedelta(seconds=30)))
    await service.on_position(ping("U2", *CENTRE, newest))
    assert service.clock() == newest
    assert service.fleet_counts(service.clock()) == (2, 1)


async def test_the_learned_eta_replaces_the_configured_one_with_the_drives_of_its_window(
    store: FakeDispatchStore, clock: Clock
) -> None:
    """Drives from U1's corner to the centre crawled at 6 km/h: once learned, U1's ETA there is 0.6 s a metre."""
    u1 = (CENTRE[0] + 100 / 111_195, CENTRE[1])
    week_ago = T0 - timedelta(weeks=1)
    store.trips = [drive(u1, CENTRE, kmh=6.0, at=week_ago + timedelta(minutes=i), call_id=f"C{i}") for i in range(10)]
    store.trips.append(drive(u1, CENTRE, kmh=60.0, at=T0 - timedelta(days=40), call_id="C-old"))
    service = await started(store, clock, EtaLearning(history=timedelta(days=28), rules=ProfileRules(prior_metres=0)))
    await service.on_position(ping("U1", *u1, T0 - timedelta(seconds=5)))
    configured = (await service.create_call(call_at_centre())).recommendations[0]
    profiles = await service.learn_eta()
    learned = (await service.create_call(call_at_centre())).recommendations[0]
    assert profiles.trips == 10
    assert profiles.built_at == T0
    assert configured.unit_id == learned.unit_id == "U1"
    assert configured.eta_s == pytest.approx(
        configured.distance_m * CircuityEta().rate(UnitKind.PATROL_CAR, ZoneClass.KEY_AREA), abs=0.1
    )
    assert learned.eta_s == pytest.approx(learned.distance_m * 0.6, abs=0.1)


async def test_a_call_closed_at_the_console_leaves_memory_and_a_second_close_answers_it_unchanged(
    service: DispatchService, store: FakeDispatchStore, clock: Clock
) -> None:
    created = await service.create_call(call_at_centre(call_id="C-phone"))
    clock.now = T0 + timedelta(minutes=1)
    closed = await service.close_call("C-phone", ts=None)
    again = await service.close_call("C-phone", ts=None)
    assert closed.status is again.status is CallStatus.CLOSED
    assert store.events_of("C-phone") == [CallEventKind.CREATED, CallEventKind.CLOSED]
    assert service.open_call("C-phone") is None
    assert service.open_call_count == 0
    assert created.call.timeline[-1].ts == T0 + timedelta(minutes=1)
    with pytest.raises(NotFoundError):
        await service.close_call("C-none", ts=None)


async def test_a_call_with_a_unit_on_it_is_not_closed_at_the_console(service: DispatchService) -> None:
    await service.create_call(call_at_centre(call_id="C-sent"))
    await service.assign("C-sent", "U1", ts=None)
    with pytest.raises(ConflictError, match="U1"):
        await service.close_call("C-sent", ts=None)
    await service.set_status("U1", UnitStatus.AVAILABLE, call_id=None, ts=None)
    assert service.open_call("C-sent") is None


class _SlowStore(FakeDispatchStore):
    """Lets the event loop go while a decision is recorded, as PostgreSQL's round trip does."""

    async def record(self, calls: dict[str, Call], decision: Decision, believed: Believed) -> None:
        await asyncio.sleep(0)
        await super().record(calls, decision, believed)


async def test_a_close_racing_its_retry_on_one_replica_is_answered_the_closed_call_both_times(clock: Clock) -> None:
    store = _SlowStore()
    await store.import_registry(registry())
    service = await started(store, clock)
    await service.create_call(call_at_centre(call_id="C-twice"))
    racing = await asyncio.gather(service.close_call("C-twice", ts=None), service.close_call("C-twice", ts=None))
    assert [c.status for c in racing] == [CallStatus.CLOSED, CallStatus.CLOSED]
    assert store.events_of("C-twice") == [CallEventKind.CREATED, CallEventKind.CLOSED]


class _ForgetfulStore(FakeDispatchStore):
    """Records nothing, so what stays in memory per call is the dispatcher's own."""

    async def create_call(self, call: Call, decision: Decision, believed: Believed) -> bool:
        return True

    async def record(self, calls: dict[str, Call], decision: Decision, believed: Believed) -> None:
        return None


async def test_an_open_call_leaves_three_objects_for_the_garbage_collector_to_walk(clock: Clock) -> None:
    """The call, its timeline and its one event. Every object an open call keeps is walked again by each collection
    of the older generations; a bench leaving tens of thousands of calls open paused the dispatcher for a third of
    a second in one (README, "The calls path, session 21")."""
    store = _ForgetfulStore()
    await store.import_registry(registry())
    service = await started(store, clock)
    await service.create_call(call_at_centre(call_id="C-warm"))
    gc.collect()
    before = len(gc.get_objects())
    calls = 500
    for i in range(calls):
        await service.create_call(call_at_centre(call_id=f"C-{i}"))
    gc.collect()
    assert service.open_call_count == calls + 1
    assert (len(gc.get_objects()) - before) / calls == pytest.approx(3, abs=0.05)
