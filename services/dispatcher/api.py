"""Dispatcher REST for consoles (contract section 4): registry, nearest units, calls, statuses, live events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal, TypeVar

import orjson
from fastapi import APIRouter, Depends, Query, Request, Response, status
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.types import Scope

from services.dispatcher.domain.calls import Call, CallStatus
from services.dispatcher.domain.coverage import Coverage
from services.dispatcher.domain.live_map import UnitFilter, UnitState
from services.dispatcher.events import is_closing
from services.dispatcher.messages import call_event_message
from services.dispatcher.service import DispatchService, NewCall, Order, Recommendation
from shared.contract.registry import (
    MultiPolygon,
    Platform,
    PlatformKind,
    Polygon,
    RegistryImport,
    Unit,
    UnitKind,
    Zone,
    ZoneClass,
    storable_text,
)
from shared.contract.roles import Role
from shared.contract.schemas import AdviceMessage, CallEventMessage, Latitude, Longitude, UnitStatus
from shared.errors import InvalidError
from shared.web.auth import require_role
from shared.web.service import service_state

router = APIRouter()

Reader = Depends(require_role(Role.VIEWER, Role.DISPATCHER))
Dispatching = require_role(Role.DISPATCHER)
Dispatcher = Depends(Dispatching)
Admin = Depends(require_role(Role.ADMIN))


async def service_of(request: Request) -> DispatchService:
    """Async, as every dependency here: FastAPI runs a plain `def` dependency in a worker thread, per request."""
    return service_state(request, DispatchService)


Service = Annotated[DispatchService, Depends(service_of)]


class _Body(BaseModel):
    """A request body: unknown fields refused, and text PostgreSQL can store."""

    model_config = ConfigDict(extra="forbid")
    _storable = field_validator("*", mode="after")(storable_text)


# registry


class PlatformBody(_Body):
    name: Annotated[str, Field(min_length=1, max_length=200)]
    kind: PlatformKind
    lat: Latitude
    lon: Longitude


class UnitBody(_Body):
    platform_id: Annotated[str, Field(min_length=1, max_length=64)]
    kind: UnitKind
    callsign: Annotated[str, Field(min_length=1, max_length=32)]
    terminal_id: Annotated[str, Field(min_length=1, max_length=20)] | None = None
    terminal_utc_offset_min: Annotated[int, Field(ge=-720, le=840)] = 480


class ZoneBody(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    class_: ZoneClass = Field(alias="class")
    geometry: Annotated[Polygon | MultiPolygon, Field(discriminator="type")]


class ImportCounts(BaseModel):
    platforms: int
    units: int
    zones: int


class PositionView(BaseModel):
    ts: datetime
    lat: float
    lon: float
    speed_kmh: float | None
    heading_deg: float | None


class UnitView(BaseModel):
    id: str
    platform_id: str
    kind: UnitKind
    callsign: str
    terminal_id: str | None
    status: UnitStatus
    status_since: datetime | None
    call_id: str | None
    position: PositionView | None
    online: bool


def unit_view(service: DispatchService, unit: UnitState) -> UnitView:
    position = unit.position
    return UnitView(
        id=unit.unit_id,
        platform_id=unit.platform_id,
        kind=unit.kind,
        callsign=unit.callsign,
        terminal_id=unit.terminal_id,
        status=unit.status,
        status_since=unit.status_since,
        call_id=unit.call_id,
        position=None
        if position is None
        else PositionView(
            ts=position.ts,
            lat=position.lat,
            lon=position.lon,
            speed_kmh=position.speed_kmh,
            heading_deg=position.heading_deg,
        ),
        online=service.online(unit, service.clock()),
    )


R = TypeVar("R", Platform, Unit, Zone)


def registry_item(model: type[R], fields: dict[str, Any]) -> R:
    """The path's id joined to the body, validated as the registry item: what the id or a field breaks (an id too
    long, a terminal number of zeros) is a 422 naming the field, never a 500."""
    try:
        return model.model_validate(fields)
    except ValidationError as e:
        first = e.errors(include_url=False)[0]
        raise InvalidError(first["msg"], field=".".join(str(part) for part in first["loc"]) or None) from e


# nearest


class NearestView(BaseModel):
    units: list[Recommendation]


@router.get(
    "/v1/nearest",
    response_model=NearestView,
    tags=["dispatch"],
    dependencies=[Reader],
    description="The exact k nearest units by great-circle distance (or best k by ETA), filters applied during "
    "the search. Extension: `status=any` lifts the status filter.",
)
async def nearest(
    service: Service,
    lat: Annotated[float, Query(ge=-90, le=90)],
    lon: Annotated[float, Query(ge=-180, le=180)],
    k: Annotated[int, Query(ge=1, le=100)] = 5,
    kind: UnitKind | None = None,
    platform_id: str | None = None,
    status_filter: Annotated[UnitStatus | Literal["any"], Query(alias="status")] = UnitStatus.AVAILABLE,
    max_age_s: Annotated[float, Query(gt=0)] = 120.0,
    order: Order = Order.ETA,
) -> NearestView:
    unit_filter = UnitFilter(
        status=None if status_filter == "any" else UnitStatus(status_filter),
        kind=kind,
        platform_id=platform_id,
        max_age_s=max_age_s,
    )
    found = service.nearest(lat=lat, lon=lon, k=k, unit_filter=unit_filter, order=order, now=service.clock())
    return NearestView(units=found)


# calls


class CallBody(_Body):
    call_id: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")] | None = None
    received_at: AwareDatetime | None = None
    lat: Latitude
    lon: Longitude
    category: Annotated[str, Field(min_length=1, max_length=64)]
    priority: Literal[1, 2, 3]
    address: Annotated[str, Field(max_length=500)] | None = None
    note: Annotated[str, Field(max_length=2000)] | None = None
    auto_assign: bool = False


class CallCreatedView(BaseModel):
    call_id: str
    zone_class: ZoneClass
    target_s: int
    status: CallStatus
    recommendations: list[Recommendation]
    assigned_unit_id: str | None


class CallView(BaseModel):
    call_id: str
    received_at: datetime
    lat: float
    lon: float
    category: str
    priority: int
    address: str | None
    note: str | None
    zone_class: ZoneClass
    target_s: int
    status: CallStatus
    assigned_unit_ids: list[str]
    timeline: list[CallEventMessage]


def call_view(call: Call) -> CallView:
    return CallView(
        call_id=call.call_id,
        received_at=call.received_at,
        lat=call.lat,
        lon=call.lon,
        category=call.category,
        priority=call.priority,
        address=call.address,
        note=call.note,
        zone_class=call.zone_class,
        target_s=call.target_s,
        status=call.status,
        assigned_unit_ids=sorted(call.assigned),
        timeline=[call_event_message(call, e) for e in call.timeline],
    )


class AssignBody(_Body):
    unit_id: Annotated[str, Field(min_length=1, max_length=64)]
    ts: AwareDatetime | None = None


class CloseBody(_Body):
    ts: AwareDatetime | None = None


class StatusBody(_Body):
    status: UnitStatus
    call_id: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    ts: AwareDatetime | None = None


@router.post(
    "/v1/calls",
    response_model=CallCreatedView,
    status_code=status.HTTP_201_CREATED,
    tags=["calls"],
    dependencies=[Dispatcher],
    responses={200: {"description": "the call_id exists already: the existing call, nothing created"}},
)
async def create_call(body: CallBody, request: Request) -> Response:
    # The hottest route: the answer is serialised once by orjson rather than validated again against
    # `CallCreatedView`, which still documents it; `test_api_fuzz` holds the answers to that schema. Most requests
    # never come here: the direct lane serves them (`create_call_direct`).
    return await _create_call(service_state(request, DispatchService), body)


async def create_call_direct(scope: Scope, body: bytes) -> Response | None:
    """`POST /v1/calls` in the direct lane (`shared/web/direct_route.py`): the requests with a dispatcher's token and
    a JSON body that validates, read and checked as `create_call`'s dependencies would; None for any other, which the
    documented route then answers (README, "The calls path, session 18")."""
    request = Request(scope)
    if not Dispatching.admits(request.headers.get("authorization"), request.app.state.settings.tokens):
        return None
    if request.headers.get("content-type") != "application/json":
        return None
    try:
        body_read = CallBody.model_validate(orjson.loads(body))
    except (orjson.JSONDecodeError, ValidationError):
        return None
    return await _create_call(service_state(request, DispatchService), body_read)


async def _create_call(service: DispatchService, body: CallBody) -> Response:
    outcome = await service.create_call(NewCall(**body.model_dump()))
    call = outcome.call
    first_assigned = next((e.unit_id for e in call.timeline if e.event == "assigned"), None)
    view = {
        "call_id": call.call_id,
        "zone_class": call.zone_class,
        "target_s": call.target_s,
        "status": call.status,
        "recommendations": outcome.recommendations,
        "assigned_unit_id": outcome.assigned_unit_id if outcome.created else first_assigned,
    }
    return Response(
        orjson.dumps(view),
        status_code=status.HTTP_201_CREATED if outcome.created else status.HTTP_200_OK,
        media_type="application/json",
    )


@router.get("/v1/calls", response_model=list[CallView], tags=["calls"], dependencies=[Reader])
async def list_calls(
    service: Service,
    status_filter: Annotated[CallStatus | None, Query(alias="status")] = None,
    received_from: Annotated[AwareDatetime | None, Query(alias="from")] = None,
    received_to: Annotated[AwareDatetime | None, Query(alias="to")] = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> list[CallView]:
    calls = await service.calls(status=status_filter, received_from=received_from, received_to=received_to, limit=limit)
    return [call_view(c) for c in calls]


@router.get("/v1/calls/{call_id}", response_model=CallView, tags=["calls"], dependencies=[Reader])
async def get_call(call_id: str, service: Service) -> CallView:
    return call_view(await service.call(call_id))


@router.post(
    "/v1/calls/{call_id}/assign",
    response_model=CallView,
    tags=["calls"],
    dependencies=[Dispatcher],
    responses={409: {"description": "the unit is not available, or the call is closed"}},
)
async def assign(call_id: str, body: AssignBody, service: Service) -> CallView:
    return call_view(await service.assign(call_id, body.unit_id, ts=body.ts))


@router.post(
    "/v1/calls/{call_id}/close",
    response_model=CallView,
    tags=["calls"],
    dependencies=[Dispatcher],
    responses={409: {"description": "units are on the call: it closes when the last of them clears"}},
)
async def close_call(call_id: str, service: Service, body: CloseBody | None = None) -> CallView:
    """Close a call no unit is on (handled on the phone, a repeated report). Closing a closed call answers it
    unchanged. An extension of the contract."""
    return call_view(await service.close_call(call_id, ts=body.ts if body else None))


@router.post("/v1/units/{unit_id}/status", response_model=UnitView, tags=["calls"], dependencies=[Dispatcher])
async def set_status(unit_id: str, body: StatusBody, service: Service) -> UnitView:
    unit = await service.set_status(unit_id, body.status, call_id=body.call_id, ts=body.ts)
    return unit_view(service, unit)


# console


class SessionView(BaseModel):
    role: Role
    clock: Literal["wall", "event"]
    now: datetime
    max_position_age_s: float


@router.get(
    "/v1/session",
    response_model=SessionView,
    tags=["console"],
    description="Extension: what a console needs to know of its session: the token's role (a viewer is shown no "
    "controls), the dispatcher's clock and its now (countdowns run on it) and how old a fix may be for a unit to "
    "count as online.",
)
async def session(
    request: Request, service: Service, role: Annotated[Role, Depends(require_role(Role.VIEWER, Role.DISPATCHER))]
) -> SessionView:
    settings = request.app.state.settings
    return SessionView(
        role=role, clock=settings.clock, now=service.clock(), max_position_age_s=settings.max_position_age_s
    )


class MapView(BaseModel):
    name: str | None
    streets: dict[str, Any]
    places: list[dict[str, Any]]


@router.get(
    "/v1/map",
    response_model=MapView,
    tags=["console"],
    dependencies=[Reader],
    description="Extension: the base map of `KUAIJING_CITY_FILE` (its streets as GeoJSON, one MultiLineString per "
    "road class, and its named places); empty when no city file is set.",
)
async def base_map_of(request: Request) -> Response:
    return Response(request.app.state.base_map, media_type="application/json")


# coverage


class CoverageFigure(BaseModel):
    target_s: int
    cells: int = Field(description="H3 cells (resolution 8) of the area")
    covered: int = Field(description="cells an available unit reaches within target_s by the ETA model in force")
    share: float


class ClassCoverage(CoverageFigure):
    zone_class: ZoneClass


class ZoneCoverage(CoverageFigure):
    zone_id: str
    zone_class: ZoneClass


class CoverageView(BaseModel):
    at: datetime
    eta_model: Literal["configured", "learned"]
    classes: list[ClassCoverage]
    zones: list[ZoneCoverage]


class CoverageHourView(BaseModel):
    hour: datetime
    zone_class: ZoneClass
    samples: int
    mean_share: float
    min_share: float


class CoverageHistoryView(BaseModel):
    from_: datetime = Field(alias="from")
    to: datetime
    hours: list[CoverageHourView]


def _figure(c: Coverage) -> dict[str, Any]:
    return {"target_s": c.target_s, "cells": c.cells, "covered": c.covered, "share": round(c.share, 4)}


@router.get(
    "/v1/coverage",
    response_model=CoverageView,
    tags=["coverage"],
    dependencies=[Reader],
    description="Extension: the share of each zone's area, and of each class's, that an available unit reaches "
    "within the target by the ETA model in force, as last measured (every `KUAIJING_COVERAGE_EVERY_S`).",
)
async def coverage(service: Service) -> CoverageView:
    snapshot = service.coverage()
    return CoverageView(
        at=snapshot.at,
        eta_model="learned" if service.profiles is not None else "configured",
        classes=[ClassCoverage(zone_class=k, **_figure(c)) for k, c in snapshot.classes.items()],
        zones=[ZoneCoverage(zone_id=z, zone_class=k, **_figure(c)) for z, (k, c) in sorted(snapshot.zones.items())],
    )


@router.get(
    "/v1/coverage/history",
    response_model=CoverageHistoryView,
    response_model_by_alias=True,
    tags=["coverage"],
    dependencies=[Reader],
    description="Extension: each class's coverage hour by hour (UTC hours) from the samples kept every "
    "`KUAIJING_COVERAGE_SAMPLE_S`: mean and lowest share; `from` defaults to 24 hours before `to`, `to` to now.",
)
async def coverage_history(
    service: Service,
    since: Annotated[AwareDatetime | None, Query(alias="from")] = None,
    until: Annotated[AwareDatetime | None, Query(alias="to")] = None,
) -> CoverageHistoryView:
    until = until or service.clock()
    since = since or until - timedelta(hours=24)
    if since >= until:
        raise InvalidError(field="from", error="must be before to")
    hours = await service.coverage_history(since=since, until=until)
    return CoverageHistoryView.model_validate(
        {"from": since, "to": until, "hours": [CoverageHourView.model_validate(h, from_attributes=True) for h in hours]}
    )


@router.get(
    "/v1/advice",
    response_model=list[AdviceMessage],
    tags=["coverage"],
    dependencies=[Reader],
    description="Extension: move-up advice (as on `kuaijing.advice`), the newest per unit still available, newest "
    "first, since `since` (default: the last 10 minutes). Advice only: the dispatcher moves no unit by itself.",
)
async def move_up_advice(
    service: Service, since: Annotated[AwareDatetime | None, Query()] = None
) -> list[AdviceMessage]:
    return await service.advice(since)


# live feed


@router.get(
    "/v1/events",
    tags=["live"],
    dependencies=[Reader],
    description="Server-Sent Events: `position` (at most one per unit per second), `status` and `call`.",
)
async def events(request: Request, service: Service) -> EventSourceResponse:
    async def stream() -> AsyncIterator[ServerSentEvent]:
        async with service.subscribe() as queue:
            yield ServerSentEvent(comment="subscribed")
            while True:
                event = await queue.get()
                if is_closing(event):
                    return
                yield ServerSentEvent(data=orjson.dumps(event.data).decode(), event=event.kind)

    return EventSourceResponse(stream(), ping=15)


# registry routes, last: a request is matched against the routes in order, and these are the rarely called


@router.put("/v1/platforms/{platform_id}", response_model=Platform, tags=["registry"], dependencies=[Admin])
async def put_platform(platform_id: str, body: PlatformBody, service: Service) -> Platform:
    platform = registry_item(Platform, {"id": platform_id, **body.model_dump()})
    await service.import_registry(RegistryImport(platforms=[platform]))
    return platform


@router.put("/v1/units/{unit_id}", response_model=Unit, tags=["registry"], dependencies=[Admin])
async def put_unit(unit_id: str, body: UnitBody, service: Service) -> Unit:
    unit = registry_item(Unit, {"id": unit_id, **body.model_dump()})
    await service.register_unit(unit)
    return unit


@router.put("/v1/zones/{zone_id}", response_model=Zone, tags=["registry"], dependencies=[Admin])
async def put_zone(zone_id: str, body: ZoneBody, service: Service) -> Zone:
    zone = registry_item(Zone, {"id": zone_id, "geometry": body.geometry, "class": body.class_})
    await service.import_registry(RegistryImport(zones=[zone]))
    return zone


@router.post("/v1/registry/import", response_model=ImportCounts, tags=["registry"], dependencies=[Admin])
async def import_registry(document: RegistryImport, service: Service) -> ImportCounts:
    return ImportCounts(**await service.import_registry(document))


@router.get("/v1/platforms", response_model=list[Platform], tags=["registry"], dependencies=[Reader])
async def list_platforms(service: Service) -> list[Platform]:
    return await service.platforms()


@router.get("/v1/platforms/{platform_id}", response_model=Platform, tags=["registry"], dependencies=[Reader])
async def get_platform(platform_id: str, service: Service) -> Platform:
    return await service.platform(platform_id)


@router.get("/v1/units", response_model=list[UnitView], tags=["registry"], dependencies=[Reader])
async def list_units(service: Service, platform_id: str | None = None) -> list[UnitView]:
    return [unit_view(service, u) for u in service.units(platform_id=platform_id)]


@router.get("/v1/units/{unit_id}", response_model=UnitView, tags=["registry"], dependencies=[Reader])
async def get_unit(unit_id: str, service: Service) -> UnitView:
    return unit_view(service, service.unit(unit_id))


@router.get("/v1/zones", response_model=list[Zone], tags=["registry"], dependencies=[Reader])
async def list_zones(service: Service) -> list[Zone]:
    return await service.zones()


@router.get("/v1/zones/{zone_id}", response_model=Zone, tags=["registry"], dependencies=[Reader])
async def get_zone(zone_id: str, service: Service) -> Zone:
    return await service.zone(zone_id)
