"""The learned ETA on the real PostgreSQL: drives to calls read from stored positions and call events, the
backtest command on them, and the running dispatcher's ETA metrics."""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest

from services.cli import main
from services.dispatcher.adapters.store import PostgresDispatchStore
from services.ingest.adapters.history_store import HistoryStore
from shared.contract.schemas import PositionRecord, Source
from shared.geo import h3_cell
from tests.conftest import Fleet, Infra, RunningService, register_fleet
from tests.harness import eventually, fresh_database

pytestmark = pytest.mark.integration

SITE = (30.10, 119.80)
"""Where these drives happen: away from the other tests' units."""
WEST_KMH, EAST_KMH = 12.0, 60.0


def fix(fleet: Fleet, unit_id: str, ts: datetime, lat: float, lon: float) -> PositionRecord:
    return PositionRecord(
        unit_id=unit_id, ts=ts, lat=lat, lon=lon, platform_id=fleet.platform_id, h3=h3_cell(lat, lon),
        source=Source.HTTP, received_at=ts,
    )  # fmt: skip


async def store_drive(
    pool: asyncpg.Pool, history: HistoryStore, fleet: Fleet, index: int, dispatched: datetime, *, arrive: bool = True
) -> None:
    """A call, a unit (one call a week each) sent at `dispatched` from 400-1,400 m west (slow streets) or east
    (fast) driving straight at it with a fix every 2 s, on scene at the last fix; a fix before and after the drive."""
    side = -1 if index % 2 else 1
    kmh = WEST_KMH if side < 0 else EAST_KMH
    unit_id = fleet.unit_ids[index // 4 % len(fleet.unit_ids)]
    goal = (SITE[0] + (index % 5) * 0.001, SITE[1] + side * 0.02)
    metres = 400 + (index * 97) % 1000
    start = (goal[0], goal[1] - side * metres / (111_195 * math.cos(math.radians(goal[0]))))
    seconds = metres / (kmh / 3.6)
    steps = math.ceil(seconds / 2)
    arrived = dispatched + timedelta(seconds=seconds)
    records = [fix(fleet, unit_id, dispatched - timedelta(seconds=30), start[0] - 0.01, start[1])]
    for i in range(steps + 1):
        share = i / steps
        at = dispatched + timedelta(seconds=seconds * share)
        records.append(fix(fleet, unit_id, at, *(s + (g - s) * share for s, g in zip(start, goal, strict=True))))
    records.append(fix(fleet, unit_id, arrived + timedelta(seconds=20), goal[0] + 0.01, goal[1]))
    await history.write(records, [])
    call_id = f"ETA-{index:03d}"
    await pool.execute(
        "INSERT INTO calls (call_id, received_at, lat, lon, category, priority, zone_class, target_s) "
        "VALUES ($1, $2, $3, $4, 'theft', 2, 'central_urban', 180)",
        call_id, dispatched - timedelta(seconds=20), *goal,
    )  # fmt: skip
    events = [("created", "", dispatched - timedelta(seconds=20)), ("assigned", unit_id, dispatched)]
    events += [("on_scene", unit_id, arrived)] if arrive else []
    await pool.executemany(
        "INSERT INTO call_events (call_id, event, unit_id, ts) VALUES ($1, $2, $3, $4)",
        [(call_id, *event) for event in events],
    )


async def test_drives_to_calls_are_read_from_history_and_the_backtest_compares_both_models(
    infra: Infra, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    database = await fresh_database(infra.database, "eta")
    fleet = await register_fleet(database, units=12)
    week_start = (datetime.now(UTC) - timedelta(days=29)).replace(hour=8, minute=0, second=0, microsecond=0)
    pool = await asyncpg.create_pool(database, min_size=1, max_size=2)
    try:
        history = HistoryStore(pool)
        for index in range(48):
            await store_drive(pool, history, fleet, index, week_start + timedelta(weeks=index % 4, minutes=index))
        await store_drive(pool, history, fleet, 48, week_start + timedelta(minutes=50), arrive=False)
        trips = await PostgresDispatchStore(pool).completed_trips(since=week_start - timedelta(hours=1))
    finally:
        await pool.close()

    assert len(trips) == 48, "the drive never on scene is not one"
    first = next(t for t in trips if t.call_id == "ETA-000")
    assert first.unit_id == fleet.unit_ids[0]
    assert first.kind == "patrol_car"
    assert first.fixes[0].ts == week_start
    assert first.fixes[-1].ts == first.arrived_at, "the fixes before the dispatch and after the arrival are left out"
    assert [f.ts for f in first.fixes] == sorted(f.ts for f in first.fixes)
    assert first.travel_s == pytest.approx(first.distance_m / (EAST_KMH / 3.6), abs=0.01)

    monkeypatch.setenv("KUAIJING_DATABASE_URL", database)
    assert await asyncio.to_thread(main, ["eta", "backtest", "--days", "35"]) == 0
    out = capsys.readouterr().out
    assert "48 drives to calls ended on scene" in out
    assert "learned from 34, tested on 14 from" in out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.split()[0] in ("configured", "learned")}
    configured_median, learned_median = float(rows["configured"][2]), float(rows["learned"][2])
    assert rows["configured"][1] == rows["learned"][1] == "14"
    assert learned_median < configured_median / 2, out


async def test_the_dispatcher_reports_its_learned_eta_in_metrics(dispatcher: RunningService) -> None:
    """The profiles are built in the background after start-up (the age is NaN until then), so the test waits for a
    figure; on a loaded machine the first build can come after the first scrape."""

    async def built() -> dict[str, float] | None:
        async with httpx.AsyncClient(base_url=dispatcher.url) as client:
            metrics = (await client.get("/metrics")).text
        figures = {
            line.split()[0]: float(line.split()[1])
            for line in metrics.splitlines()
            if line.startswith("kuaijing_dispatcher_eta_")
        }
        return None if math.isnan(figures.get("kuaijing_dispatcher_eta_model_age_seconds", math.nan)) else figures

    figures = await eventually(built, timeout_s=60, what="the learned ETA's first build")
    assert set(figures) == {
        "kuaijing_dispatcher_eta_model_age_seconds",
        "kuaijing_dispatcher_eta_profile_cells",
        "kuaijing_dispatcher_eta_trips",
    }
    assert 0 <= figures["kuaijing_dispatcher_eta_model_age_seconds"] < 3600
    assert figures["kuaijing_dispatcher_eta_trips"] >= 0
