"""Estimated time of arrival: a model behind one interface, so the learned one can replace the configured one.

An ETA is the great-circle distance times seconds per metre, a rate that may depend on the unit's kind, where it is,
where it goes, the hour and the zone class there. The nearest-by-ETA search stays exact because every model also
says the least rate any unit could have for a query (`least_seconds_per_metre`), which turns a distance lower bound
into an ETA lower bound.

The configured model is great-circle distance times a circuity factor (streets are not straight: about 1.3 in
Chinese cities) over a speed per unit kind and zone class.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from shared.contract.registry import UnitKind, ZoneClass

LatLon = tuple[float, float]


@dataclass(frozen=True, slots=True)
class EtaQuery:
    """Where a unit is wanted, when, and the class of the zone there."""

    destination: LatLon
    at: datetime
    zone_class: ZoneClass


class EtaModel(Protocol):
    def seconds_per_metre(self, kind: UnitKind, origin: LatLon, query: EtaQuery) -> float:
        """Seconds to cover each metre of great-circle distance from `origin` to the query's destination."""
        ...

    def least_seconds_per_metre(self, query: EtaQuery) -> float:
        """No unit of any kind, from anywhere, has a lower rate for this query."""
        ...

    def rates_by_kind(self, query: EtaQuery) -> Mapping[UnitKind, float] | None:
        """The rates, when they depend on the unit's kind alone and not on where it is (the search then looks them
        up instead of asking per unit); None otherwise."""
        ...


def eta_s(model: EtaModel, kind: UnitKind, origin: LatLon, query: EtaQuery, distance_m: float) -> float:
    return distance_m * model.seconds_per_metre(kind, origin, query)


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
    _rates: dict[tuple[UnitKind, ZoneClass], float] = field(init=False, repr=False, compare=False)
    _least: dict[ZoneClass, float] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.circuity < 1.0:
            raise ValueError("circuity below 1 would make roads shorter than straight lines")
        missing = {(k, z) for k in UnitKind for z in ZoneClass} - set(self.speeds_kmh)
        if missing:
            raise ValueError(f"no speed for {sorted(missing)}")
        if min(self.speeds_kmh.values()) <= 0:
            raise ValueError("speeds must be positive")
        rates = {key: self.circuity * 3.6 / speed for key, speed in self.speeds_kmh.items()}
        # Precomputed once: the search asks for a rate per unit it looks at.
        object.__setattr__(self, "_rates", rates)
        object.__setattr__(self, "_least", {zone: min(rates[(kind, zone)] for kind in UnitKind) for zone in ZoneClass})

    def rate(self, kind: UnitKind, zone_class: ZoneClass) -> float:
        """Seconds per metre of great-circle distance for a kind in a zone class."""
        return self._rates[(kind, zone_class)]

    def seconds_per_metre(self, kind: UnitKind, origin: LatLon, query: EtaQuery) -> float:
        return self.rate(kind, query.zone_class)

    def least_seconds_per_metre(self, query: EtaQuery) -> float:
        return self._least[query.zone_class]

    def rates_by_kind(self, query: EtaQuery) -> Mapping[UnitKind, float]:
        return {kind: self._rates[(kind, query.zone_class)] for kind in UnitKind}
