"""The live map: every unit's newest position (by event time) and status, searchable by H3 cell.

Positions move a unit only forward in event time and only with a valid fix; statuses apply in event time too.
`offline` is derived at query time from the position's age, never stored.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from services.dispatcher.domain._index_update import place
from services.dispatcher.domain.h3_index import Bucket, Found, H3Index, Ranking, unit_vector
from shared.contract.registry import UnitKind
from shared.contract.schemas import UnitStatus

_NEVER = float("-inf")
_STALE, _PLACED, _UNPLACED = 0, 1, 2
"""What `_index_update.place` did: nothing (not newer), applied and placed in the index, applied and not placed."""


def resolution_for(units: int) -> int:
    """Coarser cells for sparse fleets: over a 50 km city, measured fastest at 7 up to about 20,000 units and at 8
    from 30,000 to 100,000 (`bench/dispatcher.py`)."""
    return 7 if units <= 20_000 else 8


@dataclass(frozen=True, slots=True)
class Position:
    ts: datetime
    lat: float
    lon: float
    speed_kmh: float | None = None
    heading_deg: float | None = None


@dataclass(slots=True)
class UnitState:
    unit_id: str
    platform_id: str
    kind: UnitKind
    callsign: str
    terminal_id: str | None = None
    status: UnitStatus = UnitStatus.AVAILABLE
    status_since: datetime | None = None
    call_id: str | None = None
    position: Position | None = None
    position_epoch: float = _NEVER
    bucket: Bucket[UnitState] | None = None
    """Where the index holds the unit, kept by the index (`h3_index.Located`)."""
    slot: int = -1

    @property
    def cell(self) -> int | None:
        """The H3 cell the index holds the unit in, None while it holds it nowhere (no position yet)."""
        bucket = self.bucket
        return None if bucket is None else bucket.cell

    @property
    def xyz(self) -> tuple[float, float, float]:
        """The position's unit vector, worked out when the index places the unit: most fixes never need it as an
        object (`_index_update.c` refreshes the bucket's packed coordinates from C doubles), and a tuple of three
        floats made and freed on every fix cost the update cache misses (README, "Position updates, session 15")."""
        position = self.position
        return (0.0, 0.0, 0.0) if position is None else unit_vector(position.lat, position.lon)

    def online(self, now: datetime, max_age_s: float) -> bool:
        return self.position_epoch >= now.timestamp() - max_age_s


@dataclass(frozen=True, slots=True)
class UnitFilter:
    status: UnitStatus | None = UnitStatus.AVAILABLE
    kind: UnitKind | None = None
    platform_id: str | None = None
    max_age_s: float = 120.0


class LiveMap:
    def __init__(self, resolution: int | None = None) -> None:
        self.units: dict[str, UnitState] = {}
        self.newest: datetime | None = None
        """The latest fix time applied to any unit: the map's clock in event time."""
        self._newest_epoch = _NEVER
        self._fixed_resolution = resolution
        self._index: H3Index[UnitState] = H3Index(resolution or resolution_for(0))

    @property
    def resolution(self) -> int:
        return self._index.resolution

    def upsert_unit(
        self, *, unit_id: str, platform_id: str, kind: UnitKind, callsign: str, terminal_id: str | None
    ) -> UnitState:
        unit = self.units.get(unit_id)
        if unit is None:
            unit = self.units[unit_id] = UnitState(unit_id, platform_id, kind, callsign, terminal_id)
        else:
            unit.platform_id, unit.kind, unit.callsign, unit.terminal_id = platform_id, kind, callsign, terminal_id
        return unit

    def remove_units_not_in(self, unit_ids: Iterable[str]) -> None:
        keep = set(unit_ids)
        for unit_id in [u for u in self.units if u not in keep]:
            unit = self.units.pop(unit_id)
            self._index.remove(unit, unit.status)

    def reindex_for_fleet(self) -> None:
        """Pick the cell resolution for the fleet's size and rebuild the index if it changed."""
        wanted = self._fixed_resolution or resolution_for(len(self.units))
        if wanted == self._index.resolution:
            return
        self._index = H3Index(wanted)
        for unit in self.units.values():
            if unit.position is not None:
                cell = self._index.cell_of(unit.position.lat, unit.position.lon)
                self._index.add(unit, cell, unit.status)

    def apply_position(self, unit_id: str, position: Position, *, fix: bool = True) -> bool:
        """Move the unit if this is its newest fixed position; True when it moved."""
        unit = self.units.get(unit_id)
        if unit is None or not fix:
            return False
        # In C: the position and its epoch set on the unit, which is refreshed in its bucket while it stays inside its
        # cell's sure disk (most pings) and otherwise moved to the bucket of the cell H3 gives; the index places it
        # only when it is held nowhere yet or no bucket of its layer holds that cell.
        placed = place(unit, position)
        if placed == _STALE:
            return False
        if placed == _UNPLACED:
            self._index.relocate(unit, position.lat, position.lon, unit.status)
        if unit.position_epoch > self._newest_epoch:
            self._newest_epoch = unit.position_epoch
            self.newest = position.ts
        return True

    def apply_status(self, unit_id: str, status: UnitStatus, call_id: str | None, ts: datetime) -> bool:
        """Set the status unless a newer one is already held; True when it changed (the same status heard twice,
        from this replica's decision and then from the topic, changes nothing)."""
        unit = self.units.get(unit_id)
        if unit is None or (unit.status_since is not None and ts < unit.status_since):
            return False
        if (unit.status, unit.call_id, unit.status_since) == (status, call_id, ts):
            return False
        cell = unit.cell
        if cell is not None and status is not unit.status:
            self._index.remove(unit, unit.status)
            self._index.add(unit, cell, status)
        unit.status, unit.call_id, unit.status_since = status, call_id, ts
        return True

    def nearest(
        self,
        *,
        lat: float,
        lon: float,
        k: int,
        now: datetime,
        unit_filter: UnitFilter,
        ranking: Ranking[UnitState],
    ) -> list[Found[UnitState]]:
        kind, platform_id = unit_filter.kind, unit_filter.platform_id

        def accept(unit: UnitState) -> bool:
            return (kind is None or unit.kind is kind) and (platform_id is None or unit.platform_id == platform_id)

        return self._index.nearest(
            lat,
            lon,
            k,
            accept=None if kind is None and platform_id is None else accept,
            ranking=ranking,
            layers=None if unit_filter.status is None else (unit_filter.status,),
            fresh_since=now.timestamp() - unit_filter.max_age_s,
        )
