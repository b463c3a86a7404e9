"""Analytics REST (contract section 6): response-time reports, daily and weekly summaries, and the dashboard."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from time import perf_counter
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import AwareDatetime, BaseModel

from services.analytics.adapters.store import AnalyticsStore, GroupBy
from services.analytics.dashboard import Today, render_dashboard
from services.analytics.domain.latency import GroupFigures
from services.analytics.metrics import AnalyticsMetrics
from services.analytics.settings import AnalyticsSettings
from services.analytics.snapshot import Snapshot
from shared.contract.roles import Role
from shared.errors import InvalidError
from shared.percentiles import Spread
from shared.web.auth import require_role
from shared.web.service import service_state, settings_of

Reader = Depends(require_role(Role.VIEWER, Role.DISPATCHER))
ScreenReader = Depends(require_role(Role.VIEWER, Role.DISPATCHER, query_token=True))


class Format(StrEnum):
    JSON = "json"
    CSV = "csv"


class SpreadView(BaseModel):
    mean: float | None
    p50: float | None
    p90: float | None
    max: float | None


class GroupView(BaseModel):
    key: str
    calls: int
    not_arrived: int
    dispatch_s: SpreadView
    travel_s: SpreadView
    response_s: SpreadView
    target_met_pct: float | None


def _spread(s: Spread) -> SpreadView:
    def r(v: float | None) -> float | None:
        return None if v is None else round(v, 3)

    return SpreadView(mean=r(s.mean), p50=r(s.p50), p90=r(s.p90), max=r(s.max))


def _group(g: GroupFigures) -> GroupView:
    return GroupView(
        key=g.key,
        calls=g.calls,
        not_arrived=g.not_arrived,
        dispatch_s=_spread(g.dispatch_s),
        travel_s=_spread(g.travel_s),
        response_s=_spread(g.response_s),
        target_met_pct=None if g.target_met_pct is None else round(g.target_met_pct, 3),
    )


def _wants_csv(request: Request, fmt: Format | None) -> bool:
    return fmt is Format.CSV or (fmt is None and "text/csv" in request.headers.get("accept", ""))


def _csv(header: Sequence[str], rows: Sequence[Sequence[Any]], filename: str) -> Response:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(["" if v is None else v for v in row] for row in rows)
    return Response(
        buffer.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@dataclass(frozen=True, slots=True)
class Analytics:
    """What analytics' routes use: the store the reports read, the metrics they are timed in, the dashboard page."""

    store: AnalyticsStore
    metrics: AnalyticsMetrics
    dashboard: Snapshot[str]


async def store_of(request: Request) -> AnalyticsStore:
    """Async: FastAPI would run a plain `def` dependency in a worker thread, per request."""
    return service_state(request, Analytics).store


async def timed(request: Request) -> AsyncIterator[None]:
    """Every report and the dashboard are timed into `kuaijing_analytics_report_seconds{route}`."""
    started = perf_counter()
    yield
    route = request.scope.get("route")
    service_state(request, Analytics).metrics.report_seconds.labels(getattr(route, "path", "?")).observe(
        perf_counter() - started
    )


router = APIRouter(dependencies=[Depends(timed)])


def timezone_name(request: Request) -> str:
    return settings_of(request, AnalyticsSettings).report_timezone


def tz_of(request: Request) -> ZoneInfo:
    return ZoneInfo(timezone_name(request))


Store = Annotated[AnalyticsStore, Depends(store_of)]


JSON_OR_CSV: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "JSON, or CSV with `?format=csv` or `Accept: text/csv`",
        "content": {"application/json": {}, "text/csv": {"schema": {"type": "string"}}},
    }
}


@router.get(
    "/v1/reports/response-times",
    tags=["reports"],
    dependencies=[Reader],
    responses=JSON_OR_CSV,
    description="Exact figures over every call received in [from, to) (default: the last 24 hours). "
    "`?format=csv` or `Accept: text/csv` for CSV. Days (`group_by=day`) are local to KUAIJING_REPORT_TIMEZONE.",
)
async def response_times(
    request: Request,
    store: Store,
    start: Annotated[AwareDatetime | None, Query(alias="from")] = None,
    end: Annotated[AwareDatetime | None, Query(alias="to")] = None,
    group_by: GroupBy = GroupBy.PLATFORM,
    fmt: Annotated[Format | None, Query(alias="format")] = None,
) -> Response:
    end = end or datetime.now(UTC)
    start = start or end - timedelta(days=1)
    if start >= end:
        raise InvalidError("must be before to", field="from")
    groups = await store.report(group_by, start=start, end=end, tz=timezone_name(request))
    if _wants_csv(request, fmt):
        header = ["key", "calls", "not_arrived"]
        for figure in ("dispatch_s", "travel_s", "response_s"):
            header += [f"{figure}_{stat}" for stat in ("mean", "p50", "p90", "max")]
        rows = []
        for g in map(_group, groups):
            row: list[Any] = [g.key, g.calls, g.not_arrived]
            for spread in (g.dispatch_s, g.travel_s, g.response_s):
                row += [spread.mean, spread.p50, spread.p90, spread.max]
            rows.append([*row, g.target_met_pct])
        return _csv([*header, "target_met_pct"], rows, f"response-times-{group_by.value}.csv")
    return JSONResponse(
        {
            "from": start.isoformat(),
            "to": end.isoformat(),
            "group_by": group_by.value,
            "groups": [_group(g).model_dump() for g in groups],
        }
    )


class DayRow(BaseModel):
    key: str
    calls: int
    arrived: int
    closed: int
    mean_handling_s: float | None
    mean_response_s: float | None
    target_met_pct: float | None


def _day_window(day: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time(), tzinfo=tz)
    return start, start + timedelta(days=1)


async def _day_rows(store: AnalyticsStore, start: datetime, end: datetime) -> list[DayRow]:
    rows = await store.daily(start=start, end=end)
    return [
        DayRow(
            key=r["key"] if r["key"] is not None else "all",
            calls=r["calls"],
            arrived=r["arrived"],
            closed=r["closed"],
            mean_handling_s=None if r["mean_handling_s"] is None else round(float(r["mean_handling_s"]), 3),
            mean_response_s=None if r["mean_response_s"] is None else round(float(r["mean_response_s"]), 3),
            target_met_pct=None if r["target_met_pct"] is None else round(float(r["target_met_pct"]), 3),
        )
        for r in rows
    ]


@router.get(
    "/v1/reports/daily",
    tags=["reports"],
    dependencies=[Reader],
    responses=JSON_OR_CSV,
    description="One day per platform (and `all`): calls, reached, closed, mean handling time (received to "
    "closed), mean response time, share within target. `date` is a local day (default today).",
)
async def daily(
    request: Request,
    store: Store,
    day: Annotated[date | None, Query(alias="date")] = None,
    fmt: Annotated[Format | None, Query(alias="format")] = None,
) -> Response:
    tz = tz_of(request)
    day = day or datetime.now(tz).date()
    rows = await _day_rows(store, *_day_window(day, tz))
    if _wants_csv(request, fmt):
        fields = list(DayRow.model_fields)
        return _csv(
            ["date", *fields], [[day.isoformat(), *(getattr(r, f) for f in fields)] for r in rows], f"daily-{day}.csv"
        )
    return JSONResponse({"date": day.isoformat(), "platforms": [r.model_dump() for r in rows]})


@router.get(
    "/v1/reports/weekly",
    tags=["reports"],
    dependencies=[Reader],
    responses=JSON_OR_CSV,
    description="Week over week per platform: the local week (Monday to Sunday) containing `week_of` (default: "
    "this week) beside the week before.",
)
async def weekly(
    request: Request,
    store: Store,
    week_of: date | None = None,
    fmt: Annotated[Format | None, Query(alias="format")] = None,
) -> Response:
    tz = tz_of(request)
    anchor = week_of or datetime.now(tz).date()
    monday = anchor - timedelta(days=anchor.weekday())
    this_start = datetime.combine(monday, time(), tzinfo=tz)
    previous_start = this_start - timedelta(days=7)
    this_week = {r.key: r for r in await _day_rows(store, this_start, this_start + timedelta(days=7))}
    previous = {r.key: r for r in await _day_rows(store, previous_start, this_start)}
    keys = sorted(set(this_week) | set(previous), key=lambda k: (k == "all", k))
    rows = []
    for key in keys:
        now_row, before = this_week.get(key), previous.get(key)
        rows.append(
            {
                "key": key,
                "calls": now_row.calls if now_row else 0,
                "calls_previous": before.calls if before else 0,
                "mean_response_s": now_row.mean_response_s if now_row else None,
                "mean_response_s_previous": before.mean_response_s if before else None,
                "target_met_pct": now_row.target_met_pct if now_row else None,
                "target_met_pct_previous": before.target_met_pct if before else None,
            }
        )
    if _wants_csv(request, fmt):
        header = list(rows[0]) if rows else ["key"]
        return _csv(["week_of", *header], [[monday.isoformat(), *r.values()] for r in rows], f"weekly-{monday}.csv")
    return JSONResponse(
        {"week_of": monday.isoformat(), "previous_week_of": (monday - timedelta(days=7)).isoformat(), "platforms": rows}
    )


DASHBOARD_REFRESH_S = 30
"""How often a wall screen reloads the dashboard (the page's own refresh)."""


async def dashboard_page(store: AnalyticsStore, timezone: str) -> str:
    """The dashboard as of now. Its two week-long percentile reports run side by side, on two connections."""
    tz = ZoneInfo(timezone)
    now = datetime.now(tz)
    week_ago = now - timedelta(days=7)
    by_platform, by_zone, day_rows, names, coverage = await asyncio.gather(
        store.report(GroupBy.PLATFORM, start=week_ago, end=now, tz=timezone),
        store.report(GroupBy.ZONE_CLASS, start=week_ago, end=now, tz=timezone),
        _day_rows(store, *_day_window(now.date(), tz)),
        store.platform_names(),
        store.coverage_hours(start=now - timedelta(hours=24), end=now),
    )
    total = next((r for r in day_rows if r.key == "all"), None)
    today = Today(
        calls=total.calls if total else 0,
        arrived=total.arrived if total else 0,
        not_arrived=(total.calls - total.arrived) if total else 0,
        target_met_pct=total.target_met_pct if total else None,
    )
    return render_dashboard(
        by_platform=by_platform,
        by_zone=by_zone,
        today=today,
        generated_at=now,
        refresh_s=DASHBOARD_REFRESH_S,
        platform_names=names,
        coverage=coverage,
    )


@router.get(
    "/",
    response_class=HTMLResponse,
    tags=["dashboard"],
    dependencies=[ScreenReader],
    description="The command-centre dashboard, as of the instant it names: a snapshot shared by every screen and "
    "taken again once older than KUAIJING_DASHBOARD_MAX_AGE_S.",
)
async def dashboard(request: Request) -> HTMLResponse:
    return HTMLResponse(await service_state(request, Analytics).dashboard.get())
