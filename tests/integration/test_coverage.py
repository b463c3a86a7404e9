"""Live coverage through the running dispatcher: a zone put over REST, a unit's fix on the positions topic, the
zone covered around it, samples kept for the hour-by-hour report, and the share in /metrics."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import h3
import h3.api.basic_int as h3i
import httpx
import pytest

from services.dispatcher.adapters.store import PostgresDispatchStore
from services.dispatcher.domain.coverage import COVERAGE_RESOLUTION, Coverage, CoverageSnapshot
from services.dispatcher.settings import DispatcherSettings
from shared.contract.registry import ZoneClass
from shared.contract.topics import ADVICE, COVERAGE
from shared.geo import great_circle_m
from shared.settings import CommonSettings
from tests.conftest import TOKENS, Fleet, Infra, RunningService, console, register_fleet
from tests.harness import TopicTail, eventually, fresh_database
from tests.integration.test_dispatcher import report

pytestmark = pytest.mark.integration

HUB = h3i.latlng_to_cell(29.50, 118.50, COVERAGE_RESOLUTION)
"""A cell nobody else's tests use."""
ADVICE_HUB = h3i.latlng_to_cell(29.60, 118.60, COVERAGE_RESOLUTION)


async def test_a_unit_covers_the_cells_it_reaches_in_time_and_the_history_keeps_samples(
    settings: CommonSettings, dispatcher: RunningService, crew: Fleet
) -> None:
    zone_id = f"Z-COV-{uuid.uuid4().hex[:6]}"
    geometry = dict(h3i.cells_to_geo(h3i.grid_disk(HUB, 1)))
    async with console(dispatcher, "admin") as admin:
        put = await admin.put(f"/v1/zones/{zone_id}", json={"class": "key_area", "geometry": geometry})
        assert put.status_code == 200, put.text
    hub = h3i.cell_to_latlng(HUB)
    await report(settings, crew, crew.unit_ids[0], *hub)

    async with console(dispatcher, "viewer") as client:

        async def covered() -> dict[str, Any] | None:
            body = (await client.get("/v1/coverage")).json()
            zone = next((z for z in body["zones"] if z["zone_id"] == zone_id), None)
            return body if zone is not None and zone["covered"] > 0 else None

        body = await eventually(covered, timeout_s=30, what="the zone covered by the unit at its centre")
        [zone] = [z for z in body["zones"] if z["zone_id"] == zone_id]
        recommended = await client.get(
            "/v1/nearest", params={"lat": hub[0], "lon": hub[1] + 0.004, "platform_id": crew.platform_id}
        )
        [best] = recommended.json()["units"][:1]
        rate = best["eta_s"] / best["distance_m"]
        reached = [
            c for c in h3i.grid_disk(HUB, 1) if great_circle_m(*hub, *h3i.cell_to_latlng(c)) * rate <= zone["target_s"]
        ]
        assert (zone["zone_class"], zone["target_s"], zone["cells"]) == ("key_area", 60, 7)
        assert zone["covered"] == len(reached), (zone, rate)
        assert body["eta_model"] in ("configured", "learned")
        assert any(c["zone_class"] == "key_area" and c["cells"] >= 7 for c in body["classes"])

        since = (datetime.now(UTC) - timedelta(hours=2)).isoformat()

        async def sampled() -> dict[str, Any] | None:
            history: dict[str, Any] = (await client.get("/v1/coverage/history", params={"from": since})).json()
            hours = history["hours"]
            return history if any(h["zone_class"] == "key_area" and h["mean_share"] > 0 for h in hours) else None

        history = await eventually(sampled, what="key-area samples kept with the unit there (one a second here)")
        [key_hour] = [h for h in history["hours"] if h["zone_class"] == "key_area"][-1:]
        assert key_hour["samples"] >= 1
        assert 0 <= key_hour["min_share"] <= key_hour["mean_share"] <= 1
        backwards = await client.get("/v1/coverage/history", params={"from": since, "to": since})
        assert backwards.status_code == 422
    async with httpx.AsyncClient(base_url=dispatcher.url) as client:
        metrics = (await client.get("/metrics")).text
    assert 'kuaijing_dispatcher_coverage_share{zone_class="key_area"}' in metrics


@dataclass(frozen=True)
class AdviceScene:
    spare: str
    message: dict[str, Any]
    key: bytes | None
    advised: list[dict[str, Any]]


async def play_advice_scene(
    infra: Infra, settings: CommonSettings, dispatcher_settings: DispatcherSettings
) -> AdviceScene:
    """A dispatcher of its own database (so only these zones and units count): two one-cell key areas 1.5 km apart,
    one unit covering the first, two covering the second. The first's unit is sent away; the advice to move up the
    nearer of the other two is what comes of it (and the dispatcher's coverage samples meanwhile)."""
    from services.dispatcher.app import create_app

    database = await fresh_database(infra.database, "advice")
    crew = await register_fleet(database, units=3)
    hub = h3i.cell_to_latlng(ADVICE_HUB)
    north_cell = h3i.latlng_to_cell(hub[0] + 1_500 / 111_195, hub[1], COVERAGE_RESOLUTION)
    north = h3i.cell_to_latlng(north_cell)
    own = dispatcher_settings.model_copy(update={"database_url": database})
    async with RunningService(create_app(own)) as service, TopicTail(settings.kafka, ADVICE) as advice_topic:
        async with console(service, "admin") as admin:
            for zone_id, cell in (("Z-ADVICE", ADVICE_HUB), ("Z-NORTH", north_cell)):
                zone = {"class": "key_area", "geometry": dict(h3i.cells_to_geo([cell]))}
                assert (await admin.put(f"/v1/zones/{zone_id}", json=zone)).status_code == 200
        guard, spare, partner = crew.unit_ids
        await report(settings, crew, guard, *hub)
        await report(settings, crew, spare, *north)
        await report(settings, crew, partner, north[0] + 0.0008, north[1])
        async with console(service) as client:

            async def all_fresh() -> bool:
                units = {u["id"]: u for u in (await client.get("/v1/units")).json()}
                return all(units[u]["online"] for u in crew.unit_ids)

            await eventually(all_fresh, what="the three units on the live map")
            call = await client.post(
                "/v1/calls", json={"lat": hub[0] + 0.2, "lon": hub[1], "category": "theft", "priority": 1}
            )
            call_id = call.json()["call_id"]
            assert (await client.post(f"/v1/calls/{call_id}/assign", json={"unit_id": guard})).status_code == 200
            [message] = await advice_topic.collect(lambda v: v["call_id"] == call_id, 1)
            [key] = advice_topic.keys_of(lambda v: v["call_id"] == call_id)
            advised = (await client.get("/v1/advice")).json()
    return AdviceScene(spare, message, key, advised)


async def test_a_dispatch_that_leaves_a_key_area_bare_brings_advice_on_the_topic_and_over_rest(
    infra: Infra, settings: CommonSettings, dispatcher_settings: DispatcherSettings
) -> None:
    scene = await play_advice_scene(infra, settings, dispatcher_settings)
    message = scene.message
    assert scene.key == scene.spare.encode()
    assert (message["unit_id"], message["to_cell"]) == (scene.spare, h3.int_to_str(ADVICE_HUB))
    assert message["zone_class"] == "key_area"
    assert message["coverage"] == {"key_area": 0.5}
    assert [a["advice_id"] for a in scene.advised] == [message["advice_id"]]


async def test_coverage_samples_reach_analytics_by_kafka_and_its_dashboard_hour_by_hour(
    settings: CommonSettings, dispatcher: RunningService, analytics: RunningService
) -> None:
    zone_id = f"Z-DASH-{uuid.uuid4().hex[:6]}"
    geometry = dict(h3i.cells_to_geo([h3i.latlng_to_cell(29.40, 118.40, COVERAGE_RESOLUTION)]))
    async with TopicTail(settings.kafka, COVERAGE) as samples:
        async with console(dispatcher, "admin") as admin:
            put = await admin.put(f"/v1/zones/{zone_id}", json={"class": "key_area", "geometry": geometry})
            assert put.status_code == 200, put.text
        [sample] = (await samples.collect(lambda v: v["zone_class"] == "key_area", 1))[:1]
    assert sample["cells"] >= 1
    assert 0 <= sample["covered"] <= sample["cells"]
    assert sample["target_s"] == 60
    async with httpx.AsyncClient(base_url=analytics.url) as client:

        async def shown() -> str | None:
            html = (await client.get("/", params={"token": TOKENS["viewer"]})).text
            return html if 'data-zone-class="key_area"' in html else None

        html = await eventually(shown, what="the dashboard's coverage row of key areas")
    table = html[html.index('<table id="coverage">') :]
    assert "key_area (60 s)" in table


async def test_two_replicas_keeping_the_same_instant_write_one_sample_and_one_record_per_class(infra: Infra) -> None:
    """Replicas measure the same sampling instant: whichever stores it first keeps the rows and the outbox record
    for `kuaijing.coverage`, the other neither."""
    database = await fresh_database(infra.database, "coverage")
    at = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    snapshot = CoverageSnapshot(
        at,
        zones={"Z-1": (ZoneClass.KEY_AREA, Coverage(7, 3, 60))},
        classes={ZoneClass.KEY_AREA: Coverage(7, 3, 60), ZoneClass.CENTRAL_URBAN: Coverage(40, 30, 180)},
    )
    first = await asyncpg.create_pool(database, min_size=1, max_size=2)
    second = await asyncpg.create_pool(database, min_size=1, max_size=2)
    try:
        await asyncio.gather(
            PostgresDispatchStore(first).record_coverage(snapshot),
            PostgresDispatchStore(second).record_coverage(snapshot),
        )
        rows = await first.fetchval("SELECT count(*) FROM coverage_samples WHERE ts = $1", at)
        records = await first.fetch("SELECT key FROM outbox WHERE topic = $1 ORDER BY key", COVERAGE.name)
    finally:
        await first.close()
        await second.close()
    assert rows == 3, "one row per zone and per class"
    assert [bytes(r["key"]) for r in records] == [b"central_urban", b"key_area"]
