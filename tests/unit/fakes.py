"""In-memory fakes of the project's own ports, for unit tests of the services without Kafka or PostgreSQL.

They keep what the real adapters would persist or publish, so a test asserts on outcomes (the events recorded
with a decision, the records a producer was given), never on calls to a mock.
"""

from __future__ import annotations

import asyncio
import copy
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from services.dispatcher.domain.calls import Call, CallEvent, CallStatus, Decision, StatusChange
from services.dispatcher.domain.coverage import CoverageHour, CoverageSnapshot
from services.dispatcher.domain.speed_profiles import Trip
from services.dispatcher.domain.zones import ZoneDefinition
from services.dispatcher.ports import Believed, StaleStateError, StoredUnit
from shared.contract.registry import Platform, RegistryImport, Unit, Zone, ZoneClass
from shared.contract.schemas import AdviceMessage, CallEventKind, UnitStatus
from shared.errors import UnavailableError


@dataclass
class FakeDispatchStore:
    """`ports.DispatchStore` in memory: the registry, calls with their events, statuses, and every decision
    recorded (what the outbox would carry to Kafka)."""

    platforms_: dict[str, Platform] = field(default_factory=dict)
    units_: dict[str, StoredUnit] = field(default_factory=dict)
    zones_: dict[str, Zone] = field(default_factory=dict)
    calls_: dict[str, Call] = field(default_factory=dict)
    events: list[CallEvent] = field(default_factory=list)
    statuses: list[StatusChange] = field(default_factory=list)
    revision: int = 0
    trips: list[Trip] = field(default_factory=list)
    coverage_samples: dict[datetime, CoverageSnapshot] = field(default_factory=dict)
    advice_: list[AdviceMessage] = field(default_factory=list)
    """Advice recorded, with what the outbox would carry to `kuaijing.advice`."""
    """Completed drives to calls, as the store would read them from positions and call events."""
    down: bool = False
    """While set, recording a decision fails as it would with PostgreSQL unreachable."""

    async def import_registry(self, document: RegistryImport) -> dict[str, int]:
        for platform in document.platforms:
            self.platforms_[platform.id] = platform
        for unit in document.units:
            held = self.units_.get(unit.id)
            self.units_[unit.id] = StoredUnit(
                unit,
                held.status if held else UnitStatus.AVAILABLE,
                held.status_since if held else None,
                held.call_id if held else None,
                held.position if held else None,
            )
        for zone in document.zones:
            self.zones_[zone.id] = zone
        self.revision += 1
        return {"platforms": len(document.platforms), "units": len(document.units), "zones": len(document.zones)}

    async def registry_revision(self) -> int:
        return self.revision

    async def platforms(self, platform_id: str | None = None) -> list[Platform]:
        return [p for i, p in sorted(self.platforms_.items()) if platform_id in (None, i)]

    async def zones(self, zone_id: str | None = None) -> list[Zone]:
        return [z for i, z in sorted(self.zones_.items()) if zone_id in (None, i)]

    async def zone_definitions(self) -> list[ZoneDefinition]:
        return [ZoneDefinition(z.id, z.class_, z.geometry_json()) for z in self.zones_.values()]

    async def units(self) -> list[StoredUnit]:
        return list(self.units_.values())

    async def create_call(self, call: Call, decision: Decision, believed: Believed) -> bool:
        if call.call_id in self.calls_:
            return False
        self._check(believed)
        self.calls_[call.call_id] = Call(**{**call.__dict__, "timeline": [], "assigned": {}})
        await self.record({call.call_id: call}, decision, believed)
        return True

    async def record(self, calls: dict[str, Call], decision: Decision, believed: Believed) -> None:
        if self.down:
            raise UnavailableError("PostgreSQL is down (the test says so)", field="database")
        self._check(believed)
        for event in decision.events:
            self.events.append(event)
            self.calls_[event.call_id].apply(event)
        for change in decision.statuses:
            self.statuses.append(change)
            held = self.units_[change.unit_id]
            if held.status_since is None or held.status_since <= change.ts:
                self.units_[change.unit_id] = StoredUnit(
                    held.unit, change.status, change.ts, change.call_id, held.position
                )

    async def unit_statuses(self, unit_ids: list[str]) -> list[StatusChange]:
        held = [self.units_[u] for u in unit_ids if u in self.units_]
        return [StatusChange(s.unit.id, s.status, s.call_id, s.status_since) for s in held if s.status_since]

    def _check(self, believed: Believed) -> None:
        """What the Postgres store checks under its locks: another replica may have changed a unit or a call."""
        for unit_id, belief in believed.statuses.items():
            held = self.units_[unit_id]
            if (held.status, held.status_since) != belief:
                raise StaleStateError(f"unit {unit_id} was changed by another replica")
        if any(self.calls_[c].status is CallStatus.CLOSED for c in believed.open_calls):
            raise StaleStateError("a call was closed by another replica")
        on_call = (UnitStatus.DISPATCHED, UnitStatus.EN_ROUTE, UnitStatus.ON_SCENE)
        for call_id, believed_units in believed.open_calls.items():
            on_it = {s.unit.id for s in self.units_.values() if s.call_id == call_id and s.status in on_call}
            if on_it != believed_units:
                raise StaleStateError("another replica changed the units on a call")

    async def open_calls(self) -> list[Call]:
        return [copy.deepcopy(c) for c in self.calls_.values() if c.status is CallStatus.OPEN]

    async def call(self, call_id: str) -> Call | None:
        held = self.calls_.get(call_id)
        return copy.deepcopy(held) if held else None

    async def calls(
        self, *, status: CallStatus | None, received_from: datetime | None, received_to: datetime | None, limit: int
    ) -> list[Call]:
        chosen = [
            c
            for c in self.calls_.values()
            if (status is None or c.status is status)
            and (received_from is None or c.received_at >= received_from)
            and (received_to is None or c.received_at < received_to)
        ]
        return sorted(chosen, key=lambda c: c.received_at, reverse=True)[:limit]

    async def record_coverage(self, snapshot: CoverageSnapshot) -> None:
        self.coverage_samples.setdefault(snapshot.at, snapshot)

    async def coverage_history(self, *, since: datetime, until: datetime) -> list[CoverageHour]:
        hours: dict[tuple[datetime, ZoneClass], list[float]] = {}
        for at, snapshot in sorted(self.coverage_samples.items()):
            if since <= at < until:
                for zone_class, c in snapshot.classes.items():
                    hours.setdefault((at.replace(minute=0, second=0, microsecond=0), zone_class), []).append(c.share)
        return [
            CoverageHour(hour, zone_class, len(shares), sum(shares) / len(shares), min(shares))
            for (hour, zone_class), shares in sorted(hours.items())
        ]

    async def record_advice(self, messages: list[AdviceMessage]) -> None:
        self.advice_.extend(messages)

    async def advice(self, *, since: datetime) -> list[AdviceMessage]:
        return sorted((m for m in self.advice_ if m.ts >= since), key=lambda m: m.ts, reverse=True)

    async def completed_trips(self, *, since: datetime) -> list[Trip]:
        return [t for t in self.trips if t.fixes[0].ts >= since]

    def events_of(self, call_id: str) -> list[CallEventKind]:
        return [e.event for e in self.events if e.call_id == call_id]

    def add_unit(self, unit: Unit) -> None:
        self.units_[unit.id] = StoredUnit(unit, UnitStatus.AVAILABLE, None, None, None)


@dataclass
class FakeOutbox:
    kicks: int = 0

    def kick(self) -> None:
        self.kicks += 1


@dataclass
class FakeProducer:
    """`shared.contract.topics.Producer` in memory: every record sent, and an acknowledgement per record that
    the test settles (all at once by default, or with an error when the broker is meant to have refused)."""

    sent: list[tuple[str, bytes, bytes | None]] = field(default_factory=list)
    refuse: bool = False
    silent: bool = False
    """A broker that died mid-request: no acknowledgement ever comes."""

    async def send(self, topic: str, value: bytes, key: bytes | None = None) -> asyncio.Future[Any]:
        self.sent.append((topic, value, key))
        acknowledged: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.silent:
            return acknowledged
        if self.refuse:
            acknowledged.set_exception(UnavailableError("not acknowledged (refused by the test); retry", field="kafka"))
        else:
            acknowledged.set_result(None)
        return acknowledged

    def on(self, topic: str) -> list[tuple[bytes, bytes | None]]:
        return [(value, key) for t, value, key in self.sent if t == topic]
