"""What the dispatcher service needs from the world, as Protocols: the Postgres adapter and the outbox relay
implement them in production, in-memory fakes in the unit tests."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from services.dispatcher.domain.calls import Call, CallStatus, Decision
from services.dispatcher.domain.live_map import Position
from services.dispatcher.domain.zones import ZoneDefinition
from shared.contract.registry import Platform, RegistryImport, Unit, Zone
from shared.contract.schemas import UnitStatus


@dataclass(frozen=True, slots=True)
class StoredUnit:
    """A registered unit with the last status and position the store holds for it."""

    unit: Unit
    status: UnitStatus
    status_since: datetime | None
    call_id: str | None
    position: Position | None


class DispatchStore(Protocol):
    """Registry, calls and statuses. A decision is recorded in one transaction with the outbox records that will
    carry it to Kafka, so a committed change is published even across a crash."""

    async def import_registry(self, document: RegistryImport) -> dict[str, int]: ...

    async def registry_revision(self) -> int: ...

    async def platforms(self, platform_id: str | None = None) -> list[Platform]: ...

    async def zones(self, zone_id: str | None = None) -> list[Zone]: ...

    async def zone_definitions(self) -> list[ZoneDefinition]: ...

    async def units(self) -> list[StoredUnit]: ...

    async def create_call(self, call: Call, decision: Decision) -> bool:
        """False, and nothing written, when the call_id exists already."""
        ...

    async def record(self, calls: dict[str, Call], decision: Decision) -> None: ...

    async def open_calls(self) -> list[Call]: ...

    async def call(self, call_id: str) -> Call | None: ...

    async def calls(
        self, *, status: CallStatus | None, received_from: datetime | None, received_to: datetime | None, limit: int
    ) -> list[Call]: ...


class Outbox(Protocol):
    def kick(self) -> None:
        """Something was committed: publish it now rather than at the next sweep."""
        ...
