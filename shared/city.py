"""The city file (`kuaijing demo --city FILE`, `KUAIJING_CITY_FILE`): a city's platforms and crews, zones, street
network, dead spots and where 110 calls come from. The simulator drives in it; the dispatcher's console draws its
streets and offers its places as addresses. One schema, here; what each part means is in the README."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.contract.registry import PlatformKind, UnitKind, Zone
from shared.documents import read_document

Hours = Annotated[list[Annotated[float, Field(ge=0)]], Field(min_length=24, max_length=24)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class PlatformEntry(_Strict):
    """A platform or station, where its crew starts and around which it patrols."""

    id: str
    name: str
    kind: PlatformKind
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    crew: dict[UnitKind, Annotated[int, Field(ge=0, le=99)]]
    patrol_radius_m: float = Field(default=1_500, gt=0)


class KindEntry(_Strict):
    """How fast a kind of unit drives, as a share of the road's speed: on a call, and on patrol."""

    respond: float = Field(gt=0, le=2)
    patrol: float = Field(gt=0, le=2)


class RushHourEntry(_Strict):
    from_: str = Field(alias="from", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    to: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    factor: float = Field(gt=0, le=1)
    classes: list[str] = Field(min_length=1)


class RoadsEntry(_Strict):
    speeds_kmh: dict[str, Annotated[float, Field(gt=0, le=200)]] = Field(min_length=1)
    rush_hours: list[RushHourEntry] = []
    nodes: list[tuple[float, float]] = Field(min_length=2)
    """[lat, lon] of each junction; roads refer to them by position in this list."""
    roads: list[tuple[int, int, str]] = Field(min_length=1)
    """[from node, to node, class]: two-way."""


class DeadSpotEntry(_Strict):
    name: str
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    radius_m: float = Field(gt=0)


class CallArea(_Strict):
    """Calls land uniformly within `radius_m` of the centre, at a rate of `weight` times the area's profile."""

    name: str
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    radius_m: float = Field(gt=0)
    weight: float = Field(gt=0)
    profile: str = "default"


class CallsEntry(_Strict):
    profiles: dict[str, Hours]
    """Relative call rates by local hour of day (index 0 = 00:00-01:00), by name."""
    areas: list[CallArea] = Field(min_length=1)


class CityFile(_Strict):
    format: Literal["kuaijing-city/1"]
    name: str
    utc_offset_hours: float = Field(ge=-12, le=14)
    """The city's local time, which rush hours and call profiles are in."""
    kinds: dict[UnitKind, KindEntry]
    platforms: list[PlatformEntry] = Field(min_length=1)
    zones: list[Zone]
    roads: RoadsEntry
    dead_spots: list[DeadSpotEntry] = []
    calls: CallsEntry

    @field_validator("platforms")
    @classmethod
    def _distinct(cls, platforms: list[PlatformEntry]) -> list[PlatformEntry]:
        ids = [p.id for p in platforms]
        if len(set(ids)) != len(ids):
            raise ValueError("platform ids must be distinct")
        return platforms


def read_city_file(path: Path) -> CityFile:
    """The file at `path`, checked against the schema; what is wrong is one `KuaijingError` naming the file."""
    return read_document(path, CityFile, what="a city", label="the city file ")
