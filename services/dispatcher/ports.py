"""What the dispatcher service needs from the world, as Protocols: the Postgres adapter and the outbox relay
implement them in production, in-memory fakes in the unit tests."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from services.dispatcher.domain.calls import Call, CallStatus, Decision, StatusChange
from services.dispatcher.domain.coverage import CoverageHour, CoverageSnapshot
from services.dispatcher.domain.live_map import Position
from services.dispatcher.domain.speed_profiles import Trip
from services.dispatcher.domain.zones import ZoneDefinition
from shared.contract.registry import Platform, RegistryImport, Unit, Zone
from shared.contract.schemas import AdviceMessage, UnitStatus
from shared.errors import ConflictError


@dataclass(frozen=True, slots=True)
class StoredUnit:
    """A registered unit with the last status and position the store holds for it."""

    unit: Unit
    status: UnitStatus
    status_since: datetime | None
    call_id: str | None
    position: Position | None


@dataclass(frozen=True, slots=True)
class Believed:
    """What a replica believed when it decided: each changed unit's (status, since), and each call the decision
    adds to, which must still be open with exactly these units on it. Replicas decide from memory; the store refuses
    a decision whose beliefs another replica has already made false, so two replicas can never both assign one unit,
    nor close a call on which the other has just put a unit."""

    statuses: Mapping[str, tuple[UnitStatus, datetime | None]] = field(default_factory=dict)
    open_calls: Mapping[str, frozenset[str]] = field(default_factory=dict)


class StaleStateError(ConflictError):
    """Another replica changed a unit or closed a call after this replica last heard of it."""


class DispatchStore(Protocol):
    """Registry, calls and statuses. A decision is recorded in one transaction with the outbox records that will
    carry it to Kafka, so a committed change is published even across a crash."""

    async def import_registry(self, document: RegistryImport) -> dict[str, int]: ...

    async def registry_revision(self) -> int: ...

    async def platforms(self, platform_id: str | None = None) -> list[Platform]: ...

    async def zones(self, zone_id: str | None = None) -> list[Zone]: ...

    async def zone_definitions(self) -> list[ZoneDefinition]: ...

    async def units(self) -> list[StoredUnit]: ...

    async def create_call(self, call: Call, decision: Decision, believed: Believed) -> bool:
        """False, and nothing written, when the call_id exists already; `StaleStateError` when `believed` is false."""
        ...

    async def record(self, calls: dict[str, Call], decision: Decision, believed: Believed) -> None:
        """`StaleStateError`, and nothing written, when `believed` is no longer true."""
        ...

    async def unit_statuses(self, unit_ids: list[str]) -> list[StatusChange]:
        """The statuses held for these units (none for a unit that never had one: it is available)."""
        ...

    async def open_calls(self) -> list[Call]: ...

    async def call(self, call_id: str) -> Call | None: ...

    async def calls(
        self, *, status: CallStatus | None, received_from: datetime | None, received_to: datetime | None, limit: int
    ) -> list[Call]: ...

    async def record_coverage(self, snapshot: CoverageSnapshot) -> None:
        """Keep a sample for reports; a sample already kept for that instant (by another replica) stays as it is."""
        ...

    async def coverage_history(self, *, since: datetime, until: datetime) -> list[CoverageHour]: ...

    async def record_advice(self, messages: list[AdviceMessage]) -> None:
        """Advice with its outbox records to `kuaijing.advice`, in one transaction."""
        ...

    async def advice(self, *, since: datetime) -> list[AdviceMessage]: ...

    async def completed_trips(self, *, since: datetime) -> list[Trip]:
        """Every drive to a call dispatched since `since` that ended on scene, with the unit's fixes on the way."""
        ...


class Outbox(Protocol):
    def kick(self) -> None:
        """Something was committed: publish it now rather than at the next sweep."""
        ...
