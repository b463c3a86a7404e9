"""Estimated time of arrival: a small model behind one interface, so a learned one can replace it.

The default is great-circle distance times a circuity factor (streets are not straight: about 1.3 in Chinese cities)
over a speed per unit kind and zone class. A replacement (speeds per H3 cell and hour learned from the fleet's own
history, say) only has to implement `EtaModel`, including an honest `fastest_speed_kmh` so that nearest-by-ETA stays
exact.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from shared.contract.registry import UnitKind, ZoneClass


class EtaModel(Protocol):
    def eta_s(self, *, distance_m: float, unit_kind: UnitKind, zone_class: ZoneClass) -> float: ...

    def lower_bound_s(self, *, distance_m: float, zone_class: ZoneClass) -> float:
        """No unit of any kind can arrive sooner from this distance."""
        ...


def _default_speeds() -> dict[tuple[UnitKind, ZoneClass], float]:
    # Typical emergency driving speeds (km/h): motorcycles weave through dense traffic, cars win on open roads.
    by_zone = {
        ZoneClass.KEY_AREA: {UnitKind.MOTORCYCLE: 30.0, UnitKind.PATROL_CAR: 25.0, UnitKind.COMMAND_CAR: 22.0},
        ZoneClass.CENTRAL_URBAN: {UnitKind.MOTORCYCLE: 35.0, UnitKind.PATROL_CAR: 32.0, UnitKind.COMMAND_CAR: 30.0},
        ZoneClass.OTHER_URBAN: {UnitKind.MOTORCYCLE: 40.0, UnitKind.PATROL_CAR: 45.0, UnitKind.COMMAND_CAR: 42.0},
        ZoneClass.RURAL: {UnitKind.MOTORCYCLE: 45.0, UnitKind.PATROL_CAR: 60.0, UnitKind.COMMAND_CAR: 55.0},
    }
    return {(kind, zone): speed for zone, speeds in by_zone.items() for kind, speed in speeds.items()}


@dataclass(frozen=True)
class CircuityEta:
    circuity: float = 1.3
    speeds_kmh: Mapping[tuple[UnitKind, ZoneClass], float] = field(default_factory=_default_speeds)

    def __post_init__(self) -> None:
        if self.circuity < 1.0:
            raise ValueError("circuity below 1 would make roads shorter than straight lines")
        missing = {(k, z) for k in UnitKind for z in ZoneClass} - set(self.speeds_kmh)
        if missing:
            raise ValueError(f"no speed for {sorted(missing)}")
        if min(self.speeds_kmh.values()) <= 0:
            raise ValueError("speeds must be positive")

    def eta_s(self, *, distance_m: float, unit_kind: UnitKind, zone_class: ZoneClass) -> float:
        return self.circuity * distance_m / (self.speeds_kmh[(unit_kind, zone_class)] / 3.6)

    def lower_bound_s(self, *, distance_m: float, zone_class: ZoneClass) -> float:
        fastest = max(speed for (_, zone), speed in self.speeds_kmh.items() if zone is zone_class)
        return self.circuity * distance_m / (fastest / 3.6)
