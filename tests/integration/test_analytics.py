"""Call events from the real topic to exact reports, through the real Kafka and PostgreSQL."""

from __future__ import annotations

import asyncio
import csv
import io
import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from services.analytics.domain.latency import Event, call_facts, figures
from services.analytics.settings import AnalyticsSettings
from shared.contract.codec import encode
from shared.contract.schemas import CallEventKind, CallEventMessage, EventSource
from shared.contract.topics import CALLS
from shared.settings import CommonSettings
from tests.conftest import RunningService, console
from tests.harness import eventually, group_caught_up

pytestmark = pytest.mark.integration

TARGETS = {"key_area": 60, "central_urban": 180, "other_urban": 300, "rural": 900}


def scenario(window_start: datetime, tag: str, rng: random.Random, calls: int = 40) -> list[CallEventMessage]:
    """Calls over two platforms, some reached by the other platform's unit, some never reached."""
    events = []
    for i in range(calls):
        zone = rng.choice(list(TARGETS))
        call_id = f"A-{tag}-{i}"
        received = window_start + timedelta(minutes=i * 7)

        def event(
            kind: CallEventKind,
            ts: datetime,
            unit: str | None = None,
            platform: str | None = None,
            call_id: str = call_id,
            zone: str = zone,
        ) -> CallEventMessage:
            return CallEventMessage(
                call_id=call_id, event=kind, ts=ts, unit_id=unit, source=EventSource.CONSOLE if unit else None,
                lat=27.2, lon=111.4, zone_class=zone, target_s=TARGETS[zone], platform_id=platform, category="x",
                priority=2,
            )  # fmt: skip

        platform = f"P{i % 2}-{tag}"
        events.append(event(CallEventKind.CREATED, received))
        if i % 9 == 8:
            continue  # never assigned
        assigned = received + timedelta(seconds=rng.uniform(5, 60))
        events.append(event(CallEventKind.ASSIGNED, assigned, f"U{i % 2}-{tag}", platform))
        if i % 7 == 6:
            continue  # never reached
        if i % 5 == 4:  # reached first by a unit of the other platform
            other = f"P{(i + 1) % 2}-{tag}"
            events.append(
                event(CallEventKind.ASSIGNED, assigned + timedelta(seconds=5), f"U{(i + 1) % 2}-{tag}", other)
            )
            events.append(
                event(
                    CallEventKind.ON_SCENE,
                    assigned + timedelta(seconds=rng.uniform(30, 600)),
                    f"U{(i + 1) % 2}-{tag}",
                    other,
                )
            )
        arrived = assigned + timedelta(seconds=rng.uniform(40, 900))
        events.append(event(CallEventKind.ON_SCENE, arrived, f"U{i % 2}-{tag}", platform))
        events.append(event(CallEventKind.CLOSED, arrived + timedelta(minutes=20), f"U{i % 2}-{tag}", platform))
    return events


async def publish(settings: CommonSettings, events: list[CallEventMessage]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka, acks="all", enable_idempotence=True)
    try:
        await producer.start()
        for e in events:
            await producer.send(CALLS.name, encode(e), key=e.call_id.encode())
        await producer.flush()
    finally:
        await producer.stop()


def expected(events: list[CallEventMessage], key_of: Any) -> dict[str, Any]:
    by_call: dict[str, list[CallEventMessage]] = {}
    for e in events:
        by_call.setdefault(e.call_id, []).append(e)
    facts = [
        call_facts(
            cid,
            [Event(e.event, e.ts, e.unit_id, e.platform_id) for e in evs],
            target_s=evs[0].target_s,
            zone_class=evs[0].zone_class,
        )
        for cid, evs in by_call.items()
    ]
    groups: dict[str, list[Any]] = {}
    for f in facts:
        groups.setdefault(key_of(f), []).append(f)
    return {k: figures(k, v) for k, v in groups.items()}


async def stored_calls(db: asyncpg.Connection, tag: str) -> int:
    result: int = await db.fetchval("SELECT count(*) FROM call_facts WHERE call_id LIKE $1", f"A-{tag}-%")
    return result


def close(a: float | None, b: float | None) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and abs(a - b) < 1e-3)


async def test_reports_are_exact_for_every_group_by_and_a_replay_changes_nothing(
    settings: CommonSettings, analytics: RunningService, db: asyncpg.Connection
) -> None:
    tag = uuid.uuid4().hex[:8]
    start = datetime(2025, 1, 1, tzinfo=UTC) + timedelta(days=random.randrange(3000))
    events = scenario(start, tag, random.Random(tag))
    shuffled = events[:]
    random.Random(1).shuffle(shuffled)  # out of order across calls and within them
    await publish(settings, shuffled)

    async def all_stored() -> bool:
        return await stored_calls(db, tag) == 40

    await eventually(all_stored, timeout_s=30, what="the calls in analytics")
    window = {"from": start.isoformat(), "to": (start + timedelta(days=1)).isoformat()}
    async with console(analytics, "viewer") as client:
        reports = {}
        for group_by in ("platform", "zone_class", "day", "unit_kind"):
            response = await client.get("/v1/reports/response-times", params={**window, "group_by": group_by})
            assert response.status_code == 200, response.text
            reports[group_by] = response.json()
        await publish(settings, events)  # the whole history again
        await publish(settings, events[:10])
        await group_caught_up(settings.kafka, AnalyticsSettings().analytics_group, CALLS)
        replayed = await client.get("/v1/reports/response-times", params={**window, "group_by": "platform"})
        csv_body = await client.get(
            "/v1/reports/response-times", params={**window, "group_by": "zone_class"}, headers={"Accept": "text/csv"}
        )

    want = expected(events, lambda f: f.platform_id)
    got = {g["key"]: g for g in reports["platform"]["groups"]}
    assert set(got) == set(want) == {f"P0-{tag}", f"P1-{tag}", "unassigned"}
    for key, figure in want.items():
        g = got[key]
        assert (g["calls"], g["not_arrived"]) == (figure.calls, figure.not_arrived)
        for name in ("dispatch_s", "travel_s", "response_s"):
            spread = getattr(figure, name)
            for stat in ("mean", "p50", "p90", "max"):
                assert close(g[name][stat], getattr(spread, stat)), (key, name, stat)
        assert close(g["target_met_pct"], figure.target_met_pct)
    zones = expected(events, lambda f: f.zone_class)
    assert {g["key"]: g["calls"] for g in reports["zone_class"]["groups"]} == {k: v.calls for k, v in zones.items()}
    assert sum(g["calls"] for g in reports["day"]["groups"]) == 40
    assert {g["key"] for g in reports["unit_kind"]["groups"]} <= {"unknown", "unassigned"}

    assert replayed.json()["groups"] == reports["platform"]["groups"]
    rows = list(csv.DictReader(io.StringIO(csv_body.text)))
    assert csv_body.headers["content-type"].startswith("text/csv")
    assert {r["key"]: int(r["calls"]) for r in rows} == {k: v.calls for k, v in zones.items()}
    assert "response_s_p90" in rows[0]


async def test_a_call_handled_through_the_dispatcher_reaches_the_report(
    settings: CommonSettings, dispatcher: RunningService, analytics: RunningService, db: asyncpg.Connection
) -> None:
    from tests.conftest import register_fleet

    fleet = await register_fleet(settings.database, units=1)
    unit = fleet.unit_ids[0]

    async def known() -> bool:
        return unit in {u.unit_id for u in dispatcher.app.state.service.units()}

    await eventually(known, what="the dispatcher to know the unit")
    call_id = f"C-{uuid.uuid4().hex[:10]}"
    received = datetime.now(UTC) - timedelta(minutes=10)
    async with console(dispatcher) as client:
        assert (
            await client.post(
                "/v1/calls",
                json={
                    "call_id": call_id,
                    "received_at": received.isoformat(),
                    "lat": 40.0,
                    "lon": 100.0,
                    "category": "x",
                    "priority": 1,
                },
            )
        ).status_code == 201
        assert (
            await client.post(
                f"/v1/calls/{call_id}/assign",
                json={"unit_id": unit, "ts": (received + timedelta(seconds=30)).isoformat()},
            )
        ).status_code == 200
        assert (
            await client.post(
                f"/v1/units/{unit}/status",
                json={"status": "on_scene", "ts": (received + timedelta(seconds=200)).isoformat()},
            )
        ).status_code == 200

    async def in_facts() -> asyncpg.Record | None:
        return await db.fetchrow("SELECT * FROM call_facts WHERE call_id = $1 AND arrived_at IS NOT NULL", call_id)

    await eventually(in_facts, timeout_s=30, what="the call in analytics")
    async with console(analytics, "viewer") as client:
        report = (
            await client.get(
                "/v1/reports/response-times",
                params={
                    "from": (received - timedelta(seconds=1)).isoformat(),
                    "to": (received + timedelta(seconds=1)).isoformat(),
                },
            )
        ).json()
    [group] = [g for g in report["groups"] if g["key"] == fleet.platform_id]
    assert group["calls"] == 1
    assert group["response_s"]["p50"] == pytest.approx(200.0)
    assert group["dispatch_s"]["max"] == pytest.approx(30.0)
    assert group["target_met_pct"] == 100.0  # rural: 900 s


async def test_daily_and_weekly_summaries(
    settings: CommonSettings, analytics: RunningService, db: asyncpg.Connection
) -> None:
    tag = uuid.uuid4().hex[:8]
    monday = datetime(2024, 3, 4, 2, 0, tzinfo=UTC) + timedelta(weeks=random.randrange(200))  # 10:00 in Shanghai
    this_week = scenario(monday, tag, random.Random(tag), calls=10)
    week_before = scenario(monday - timedelta(days=7), f"{tag}b", random.Random(2), calls=4)
    await publish(settings, this_week + week_before)

    async def stored() -> bool:
        return await stored_calls(db, tag) == 10 and await stored_calls(db, f"{tag}b") == 4

    await eventually(stored, timeout_s=30, what="the calls in analytics")
    day = monday.date().isoformat()
    async with console(analytics, "viewer") as client:
        daily = (await client.get("/v1/reports/daily", params={"date": day})).json()
        weekly = (await client.get("/v1/reports/weekly", params={"week_of": day})).json()
        daily_csv = await client.get("/v1/reports/daily", params={"date": day, "format": "csv"})
    mine = {r["key"]: r for r in daily["platforms"] if r["key"].endswith(tag)}
    assert sum(r["calls"] for r in mine.values()) == 9  # the tenth call was never assigned: "unassigned"
    assert all(r["mean_handling_s"] is None or r["mean_handling_s"] > 1200 for r in mine.values())
    assert daily["platforms"][-1]["key"] == "all"
    assert weekly["week_of"] == day
    rows = {r["key"]: r for r in weekly["platforms"]}
    for key, figure in expected(this_week, lambda f: f.platform_id).items():
        if key != "unassigned":
            assert rows[key]["calls"] == figure.calls
            assert mine[key]["calls"] == figure.calls
    for key, figure in expected(week_before, lambda f: f.platform_id).items():
        if key != "unassigned":
            assert rows[key]["calls_previous"] == figure.calls
    assert daily_csv.text.splitlines()[0].startswith("date,key,calls")


async def test_reports_need_a_reading_role(analytics: RunningService) -> None:
    async with console(analytics, "terminal") as client:
        assert (await client.get("/v1/reports/response-times")).status_code == 403
    async with console(analytics, "viewer") as client:
        assert (await client.get("/v1/reports/response-times", params={"group_by": "weather"})).status_code == 422
        inverted = await client.get(
            "/v1/reports/response-times", params={"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"}
        )
        assert inverted.status_code == 422


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in a Prometheus text exposition (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    head = f"{name}{{{wanted}}}" if labels else name
    for line in text.splitlines():
        if line.startswith(head + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_metrics_count_events_facts_lag_and_report_latency(
    settings: CommonSettings, analytics: RunningService, db: asyncpg.Connection
) -> None:
    tag = uuid.uuid4().hex[:8]
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    events = scenario(start, tag, random.Random(7), calls=10)
    async with console(analytics, "viewer") as client:
        before = (await client.get("/metrics")).text
        await publish(settings, events)

        async def all_stored() -> bool:
            return await stored_calls(db, tag) == 10

        await eventually(all_stored, timeout_s=30, what="the calls in analytics")
        await group_caught_up(settings.kafka, AnalyticsSettings().analytics_group, CALLS)
        assert (await client.get("/v1/reports/response-times")).status_code == 200

        async def counted() -> str | None:
            text = (await client.get("/metrics")).text
            applied = metric(text, "kuaijing_analytics_events_applied_total")
            return text if applied - metric(before, "kuaijing_analytics_events_applied_total") >= len(events) else None

        after = await eventually(counted, what="the applied events counted")
    group = AnalyticsSettings().analytics_group
    assert metric(after, "kuaijing_analytics_facts_recomputed_total") >= 10
    assert f'kuaijing_consumer_lag{{group="{group}",topic="{CALLS.name}"}}' in after
    assert metric(after, "kuaijing_analytics_report_seconds_count", route="/v1/reports/response-times") >= 1


async def test_screens_share_one_snapshot_of_the_dashboard_until_it_grows_old(
    settings: CommonSettings, analytics_settings: AnalyticsSettings, analytics: RunningService, db: asyncpg.Connection
) -> None:
    """A replica keeping its snapshot for an hour serves every screen the same page, computed once; the test
    replica (half a second) shows calls stored since."""
    from services.analytics.app import create_app

    tag = uuid.uuid4().hex[:8]
    patient = analytics_settings.model_copy(
        update={"dashboard_max_age_s": 3600.0, "analytics_group": f"kuaijing-analytics-{tag}"}
    )
    async with RunningService(create_app(patient)) as replica, console(replica, "viewer") as screen:
        first = await screen.get("/")
        assert first.status_code == 200, first.text
        await publish(settings, scenario(datetime.now(UTC) - timedelta(hours=3), tag, random.Random(3), calls=10))

        async def all_stored() -> bool:
            return await stored_calls(db, tag) == 10

        await eventually(all_stored, timeout_s=30, what="the calls in analytics")
        pages = await asyncio.gather(*(screen.get("/") for _ in range(10)))
        assert {p.text for p in pages} == {first.text}, "the same snapshot, figures as of the same instant"
        assert f"P0-{tag}" not in first.text
        text = (await screen.get("/metrics")).text
        assert metric(text, "kuaijing_analytics_dashboard_snapshot_seconds_count") == 1
        assert 0 <= metric(text, "kuaijing_analytics_dashboard_age_seconds") < 3600
    async with console(analytics, "viewer") as screen:

        async def shown() -> bool:
            return f"P0-{tag}" in (await screen.get("/")).text

        await eventually(shown, what="the new calls on a dashboard whose snapshot is half a second old at most")
