"""The registry vocabulary (contract section 1): platforms, units, zones, and a bulk import document."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.contract.schemas import Latitude, Longitude, PlatformId, UnitId


class PlatformKind(StrEnum):
    FAST_RESPONSE = "fast_response"
    DISTRICT_DEFENSE = "district_defense"
    PATROL = "patrol"
    GROUP_DEFENSE = "group_defense"
    RURAL_STATION = "rural_station"


class UnitKind(StrEnum):
    COMMAND_CAR = "command_car"
    PATROL_CAR = "patrol_car"
    MOTORCYCLE = "motorcycle"


class ZoneClass(StrEnum):
    KEY_AREA = "key_area"
    CENTRAL_URBAN = "central_urban"
    OTHER_URBAN = "other_urban"
    RURAL = "rural"


ZONE_TARGET_S: dict[ZoneClass, int] = {
    ZoneClass.KEY_AREA: 60,
    ZoneClass.CENTRAL_URBAN: 180,
    ZoneClass.OTHER_URBAN: 300,
    ZoneClass.RURAL: 900,
}
"""The "1-3-5" promise plus 15 minutes in the countryside (contract section 1)."""


def normalise_terminal_id(raw: str) -> str:
    """Leading zeros are not significant: a 12-digit 2013 BCD and a 20-digit 2019 BCD name the same terminal."""
    if not raw.isdigit():
        raise ValueError("terminal_id must be digits only")
    stripped = raw.lstrip("0")
    if not stripped:
        raise ValueError("terminal_id must not be all zeros")
    return stripped


class _Item(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*", mode="after")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        return storable_text(value)


def storable_text(value: Any) -> Any:
    """PostgreSQL text cannot hold U+0000: refused at the edge, a 400 naming the field rather than a 500."""
    if isinstance(value, str) and "\x00" in value:
        raise ValueError("may not contain the NUL character (U+0000)")
    return value


class Platform(_Item):
    id: PlatformId
    name: Annotated[str, Field(min_length=1, max_length=200)]
    kind: PlatformKind
    lat: Latitude
    lon: Longitude


class Unit(_Item):
    id: UnitId
    platform_id: PlatformId
    kind: UnitKind
    callsign: Annotated[str, Field(min_length=1, max_length=32)]
    terminal_id: Annotated[str, Field(min_length=1, max_length=20)] | None = None
    terminal_utc_offset_min: Annotated[int, Field(ge=-720, le=840)] = 480
    """Zone of the terminal's clock in minutes east of UTC: JT/T 808 says GMT+8, some devices send UTC."""

    @field_validator("terminal_id")
    @classmethod
    def _normalise(cls, value: str | None) -> str | None:
        return None if value is None else normalise_terminal_id(value)


Position = Annotated[list[float], Field(min_length=2, max_length=3)]
Ring = Annotated[list[Position], Field(min_length=4)]


class Polygon(_Item):
    type: Literal["Polygon"]
    coordinates: Annotated[list[Ring], Field(min_length=1)]


class MultiPolygon(_Item):
    type: Literal["MultiPolygon"]
    coordinates: Annotated[list[Annotated[list[Ring], Field(min_length=1)]], Field(min_length=1)]


class Zone(_Item):
    id: Annotated[str, Field(min_length=1, max_length=64)]
    class_: ZoneClass = Field(alias="class")
    geometry: Annotated[Polygon | MultiPolygon, Field(discriminator="type")]

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def geometry_json(self) -> dict[str, Any]:
        return self.geometry.model_dump()


class RegistryImport(_Item):
    """The body of `POST /v1/registry/import` and the file `kuaijing registry import` reads."""

    platforms: list[Platform] = []
    units: list[Unit] = []
    zones: list[Zone] = []


@dataclass(frozen=True, slots=True)
class UnitRef:
    """What ingest needs to know about a unit to accept its pings."""

    unit_id: str
    platform_id: str
    kind: UnitKind
    terminal_id: str | None
    terminal_utc_offset_min: int = 480


@dataclass(frozen=True, slots=True)
class UnitDirectory:
    """An immutable snapshot of known units, swapped whole when the registry changes."""

    revision: int
    by_unit: dict[str, UnitRef]
    by_terminal: dict[str, UnitRef]

    @classmethod
    def of(cls, revision: int, units: list[UnitRef]) -> UnitDirectory:
        return cls(
            revision=revision,
            by_unit={u.unit_id: u for u in units},
            by_terminal={u.terminal_id: u for u in units if u.terminal_id},
        )

    @classmethod
    def empty(cls) -> UnitDirectory:
        return cls(revision=0, by_unit={}, by_terminal={})
