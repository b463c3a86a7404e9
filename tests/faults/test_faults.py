"""Kill anything mid-stream and lose nothing. Each test streams at least 100,000 pings over HTTP, JT/T 808 and the
raw topic from clients that resend what was not acknowledged, while a console creates calls and units drive to
them; a fault strikes when a third of the pings are acknowledged. Afterwards: every acknowledged ping is on
`kuaijing.positions` and in history exactly once, every committed call event is on `kuaijing.calls`, the
dispatcher's open calls and unit statuses are what PostgreSQL committed and what the console did, analytics equals a
replay from an empty database, and every service answered `/readyz` again within `READY_WITHIN_S` without help."""

from __future__ import annotations

import asyncio
import itertools
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from shared.contract.topics import CALLS, POSITIONS
from shared.infra.postgres import connect
from shared.settings import CommonSettings
from tests.conftest import TOKENS, Fleet, register_fleet
from tests.faults.checks import (
    analytics_equals_a_replay,
    call_events_published,
    dispatcher_agrees,
    end_offsets,
    pings_exactly_once,
)
from tests.faults.stage import READY_WITHIN_S, Stage
from tests.faults.traffic import Console, PingStream
from tests.harness import eventually
from tests.integration.test_analytics import metric, publish, scenario

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.timeout(600)]
"""A test's own waits bound it (a third of the stream in 180 s, the rest and the calls in 300 s after the fault),
not the suite's 120 s: `make test` runs these beside the rest of the suite, where a scenario of 35-55 s alone took up
to 92 s, and a test cut off between a fault and its healing would leave the stage broken for the next."""

PINGS = 100_000
UNITS = 60
REPLAYED_CALLS = 8_000
_AREAS = itertools.count()
"""Each test's crew works in an area of its own, so no earlier test's idle unit is the nearest to its calls."""


@dataclass(frozen=True)
class Fault:
    """`strike` returns when the fault happened (monotonic); `heal` undoes it as an orchestrator would."""

    strike: Callable[[Stage], Awaitable[float]]
    heal: Callable[[Stage], Awaitable[None]]
    services: tuple[str, ...] = ("ingest", "ingest-history", "dispatcher", "analytics")


async def _known(stage: Stage, fleet: Fleet, crew: Fleet) -> None:
    probe_ts = (datetime.now(UTC) - timedelta(days=2)).isoformat()

    async def ingest_knows() -> bool:
        pings = [{"kind": "position", "unit_id": u, "ts": probe_ts, "lat": 27.2, "lon": 111.4}
                 for u in (fleet.unit_ids[-1], crew.unit_ids[-1])]  # fmt: skip
        async with stage.replicas["ingest"].client("terminal") as c:
            return bool((await c.post("/v1/telemetry", json=pings)).json()["accepted"] == 2)

    async def dispatcher_knows() -> bool:
        async with stage.replicas["dispatcher"].client("viewer") as c:
            return (await c.get(f"/v1/units/{crew.unit_ids[-1]}")).status_code == 200

    await eventually(ingest_knows, timeout_s=30, what="ingest to learn the fleet")
    await eventually(dispatcher_knows, timeout_s=30, what="the dispatcher to learn the crew")


async def _online(stage: Stage, crew: Fleet) -> None:
    async def all_online() -> bool:
        async with stage.replicas["dispatcher"].client("viewer") as c:
            units = (await c.get("/v1/units", params={"platform_id": crew.platform_id})).json()
        return sum(bool(u["online"]) for u in units) == len(crew.unit_ids)

    await eventually(all_online, timeout_s=30, what="the crew online on the live map")


async def _arrived_by_gps(stage: Stage, call_id: str) -> None:
    async def on_scene() -> bool:
        async with stage.replicas["dispatcher"].client("viewer") as c:
            timeline = (await c.get(f"/v1/calls/{call_id}")).json()["timeline"]
        return any(e["event"] == "on_scene" and e["source"] == "gps" for e in timeline)

    await eventually(on_scene, timeout_s=60, what=f"the dispatcher to see the unit of {call_id} arrive")


async def run(stage: Stage, fault: Fault, what: str) -> None:
    tag = uuid.uuid4().hex[:8]
    fleet = await register_fleet(stage.infra.database, units=UNITS, terminals=True)
    crew = await register_fleet(stage.infra.database, units=4)
    await _known(stage, fleet, crew)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    positions_from = await end_offsets(stage.infra.kafka, POSITIONS)
    calls_from = await end_offsets(stage.infra.kafka, CALLS)

    ingest = stage.replicas["ingest"]
    console = Console(
        crew, tag=tag, dispatcher_url=stage.replicas["dispatcher"].url, ingest_url=ingest.url, area=next(_AREAS)
    )
    await console.report_in()
    await _online(stage, crew)
    first, second, waiting = [await console.create(n) for n in range(3)]
    assert [first.unit_id, second.unit_id, waiting.unit_id] == crew.unit_ids[:3], "the nearest unit was not sent"
    driving = [
        asyncio.create_task(console.drive(first, seconds=8)),
        asyncio.create_task(console.drive(second, seconds=25)),
    ]

    stream = PingStream(
        fleet, pings=PINGS, start=start, ingest_url=ingest.url, jt808_port=ingest.jt808_port, kafka=stage.infra.kafka
    )
    began = time.monotonic()
    streaming = asyncio.create_task(stream.run())

    async def a_third() -> bool:
        if streaming.done():
            streaming.result()
        return stream.acknowledged >= PINGS // 3

    await eventually(a_third, timeout_s=180, what="a third of the stream acknowledged")
    in_flight = asyncio.create_task(console.create(3))
    struck_at = await fault.strike(stage)
    await fault.heal(stage)
    ready = await stage.ready(*fault.services, since=struck_at)
    await asyncio.wait_for(asyncio.gather(streaming, in_flight, *driving), timeout=300)
    streamed_s = time.monotonic() - began

    await _arrived_by_gps(stage, first.call_id)
    await _arrived_by_gps(stage, second.call_id)
    await console.clear(first)
    assert in_flight.result().unit_id == crew.unit_ids[3]

    records, distinct, rows = await pings_exactly_once(stage, positions_from, stream.expected, start)
    events = await call_events_published(stage, calls_from, tag)
    statuses = await dispatcher_agrees(stage, console)
    calls = await analytics_equals_a_replay(stage)
    print(
        f"\n{what}: ready again (s after the fault) {ready}, within {READY_WITHIN_S:.0f} s; "
        f"{len(stream.expected):,} pings streamed in {streamed_s:.1f} s ({stream.summary()}); "
        f"{records:,} records on {POSITIONS.name} for {distinct:,} distinct pings, {rows:,} history rows; "
        f"{events} committed call events all on {CALLS.name}; console resent {console.tally.resent} "
        f"{dict(console.tally.refused)}; crew {statuses}; analytics equals a replay over {calls} calls"
    )
    assert stream.acknowledged == len(stream.expected)


def killed(name: str) -> Fault:
    async def strike(stage: Stage) -> float:
        return stage.kill(name)

    async def heal(stage: Stage) -> None:
        stage.start(name)

    return Fault(strike, heal)


async def test_broker_sigkilled_and_restarted(stage: Stage) -> None:
    async def strike(stage: Stage) -> float:
        at = stage.kill_broker()
        await asyncio.sleep(2)
        return at

    await run(stage, Fault(strike, Stage.restart_broker), "broker SIGKILLed, restarted after 2 s")


async def test_postgres_stopped_immediately_and_restarted(stage: Stage) -> None:
    async def strike(stage: Stage) -> float:
        at = stage.stop_database_immediately()
        await asyncio.sleep(2)
        return at

    await run(stage, Fault(strike, Stage.restart_database), "PostgreSQL stopped (immediate), restarted after 2 s")


async def test_ingest_sigkilled_mid_batch_and_restarted(stage: Stage) -> None:
    await run(stage, killed("ingest"), "ingest SIGKILLed mid-batch, restarted")


async def test_history_writer_sigkilled_mid_transaction_and_restarted(stage: Stage) -> None:
    """Killed the moment PostgreSQL shows one of its transactions open (COPY into staging, then the upsert)."""

    async def strike(stage: Stage) -> float:
        conn = await connect(stage.infra.database)
        try:

            async def in_transaction() -> bool:
                open_ = await conn.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE xact_start IS NOT NULL AND pid <> pg_backend_pid() "
                    "AND (query ILIKE '%positions%' OR query ILIKE 'COPY%')"
                )
                return bool(open_)

            await eventually(in_transaction, timeout_s=60, what="a history transaction open")
            at = stage.kill("ingest-history")
        finally:
            await conn.close()
        return at

    async def heal(stage: Stage) -> None:
        stage.start("ingest-history")

    await run(stage, Fault(strike, heal), "history writer SIGKILLed with a transaction open, restarted")


async def test_dispatcher_sigkilled_with_open_calls_and_restarted(stage: Stage) -> None:
    await run(stage, killed("dispatcher"), "dispatcher SIGKILLed with open calls and a call in flight, restarted")


async def test_analytics_sigkilled_mid_replay_and_restarted(stage: Stage) -> None:
    """Analytics starts over in a new group (a replay of everything on `kuaijing.calls`, made long by
    `REPLAYED_CALLS` earlier calls) and is SIGKILLed when it has recomputed a third of them."""
    history = scenario(
        datetime.now(UTC) - timedelta(days=45), uuid.uuid4().hex[:8], random.Random(3), calls=REPLAYED_CALLS
    )
    await publish(CommonSettings(kafka_bootstrap=stage.infra.kafka, database_url=stage.infra.database), history)

    async def strike(stage: Stage) -> float:
        stage.kill("analytics")
        stage.groups["analytics"] = f"fault-analytics-replay-{uuid.uuid4().hex[:6]}"
        replaying = stage.start("analytics")
        headers = {"Authorization": f"Bearer {TOKENS['viewer']}"}

        group = stage.groups["analytics"]

        async def a_third_replayed() -> float | None:
            try:
                async with httpx.AsyncClient(base_url=replaying.url, headers=headers, timeout=2) as c:
                    text = (await c.get("/metrics")).text
            except httpx.HTTPError:
                return None
            done = metric(text, "kuaijing_analytics_facts_recomputed_total") >= REPLAYED_CALLS // 3
            return metric(text, "kuaijing_consumer_lag", group=group, topic=CALLS.name) if done else None

        lag = await eventually(a_third_replayed, timeout_s=120, what="analytics a third through its replay")
        at = stage.kill("analytics")
        assert lag > 0, "the replay was over before analytics could be killed in its middle"
        print(f"\nanalytics killed {lag:,.0f} call events short of the end of its replay")
        return at

    async def heal(stage: Stage) -> None:
        stage.start("analytics")

    await run(stage, Fault(strike, heal), "analytics SIGKILLed a third into a replay, restarted")


async def test_one_of_two_ingest_replicas_killed_and_not_replaced(stage: Stage) -> None:
    """Two ingest processes share the raw topic's group and two history writers the history group; one of each
    dies mid-stream and nobody replaces it: the groups rebalance onto the survivors."""
    stage.start("ingest-2", env={"KUAIJING_HISTORY_WRITER_ENABLED": "true"})
    await stage.ready("ingest-2", since=time.monotonic())
    await _both_in_groups(stage)

    async def strike(stage: Stage) -> float:
        at = stage.kill("ingest-2")
        del stage.replicas["ingest-2"]
        return at

    async def heal(stage: Stage) -> None:
        return None

    await run(stage, Fault(strike, heal), "one of two ingest replicas and history writers SIGKILLed, not replaced")


async def _both_in_groups(stage: Stage) -> None:
    async def holding() -> bool:
        raw = f'kuaijing_consumer_lag{{group="{stage.groups["raw"]}"'
        history = f'kuaijing_consumer_lag{{group="{stage.groups["history"]}"'
        texts = {name: await stage.metrics(name) for name in ("ingest", "ingest-2", "ingest-history")}
        return (
            raw in texts["ingest"]
            and raw in texts["ingest-2"]
            and history in texts["ingest-2"]
            and (history in texts["ingest-history"])
        )

    await eventually(holding, timeout_s=60, what="both replicas holding partitions of both groups")
