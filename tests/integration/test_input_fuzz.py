"""A seeded fuzz run of ingest's three ways in: thousands of mutated JSON and NDJSON bodies over HTTP, and mutated
JT/T 808 frames over a terminal's own connection. Every answer is one the contract documents (never a 500), every
item refused is on the dead-letter topic (one letter per refused item, one per body that is not JSON), and the
valid ping sent after the noise still gets through."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta

import httpx
import orjson
import pytest

from services.ingest.settings import IngestSettings
from shared import jt808
from shared.contract.topics import DEADLETTER, POSITIONS
from shared.jt808 import MessageId, RegisterResult, Result
from shared.settings import CommonSettings
from tests.conftest import Fleet, Infra, RunningService, register_fleet
from tests.harness import TopicTail, eventually
from tests.integration.test_jt808_gateway import Terminal, location

pytestmark = pytest.mark.integration

BODIES = 2_000
FRAMES = 2_000


def mutate(rng: random.Random, data: bytes) -> bytes:
    """One to four byte-level edits: flip, insert, delete, duplicate a slice, or truncate."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        if not out:
            break
        i = rng.randrange(len(out))
        match rng.randrange(5):
            case 0:
                out[i] ^= 1 << rng.randrange(8)
            case 1:
                out.insert(i, rng.choice(b'{}[]",:0-9eE.\n\\\x00\xff'))
            case 2:
                del out[i]
            case 3:
                out[i:i] = out[i : i + rng.randint(1, 16)]
            case _:
                del out[i:]
    return bytes(out)


def pings(unit: str, rng: random.Random, n: int) -> list[dict[str, object]]:
    now = datetime.now(UTC)
    return [
        {
            "kind": rng.choice(["position", "video"]),
            "unit_id": unit,
            "ts": (now - timedelta(seconds=rng.randint(1, 3000))).isoformat(),
            "lat": round(27 + rng.random(), 6),
            "lon": round(111 + rng.random(), 6),
            "channel": 1,
            "state": "online",
            "speed_kmh": rng.choice([0, 40.5, -1, 1e6]),
        }
        for _ in range(n)
    ]


async def test_mutated_json_and_ndjson_bodies_are_answered_as_documented_and_every_refusal_dead_lettered(
    settings: CommonSettings, client: httpx.AsyncClient, fleet: Fleet
) -> None:
    rng = random.Random(808)
    unit = fleet.unit_ids[0]
    statuses: dict[int, int] = {}
    expected_letters = 0
    semaphore = asyncio.Semaphore(8)

    async def one(body: bytes, content_type: str) -> None:
        nonlocal expected_letters
        async with semaphore:
            response = await client.post("/v1/telemetry", content=body, headers={"Content-Type": content_type})
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        assert response.status_code in (202, 400), (response.status_code, response.text, body[:200])
        if response.status_code == 400:
            expected_letters += 1
        else:
            answer = response.json()
            expected_letters += len(answer["rejected"])

    async with TopicTail(settings.kafka, DEADLETTER) as deadletter:
        jobs = []
        for i in range(BODIES):
            batch = pings(unit, rng, rng.randint(1, 5))
            if i % 2:
                body, content_type = b"\n".join(orjson.dumps(p) for p in batch), "application/x-ndjson"
            else:
                body, content_type = orjson.dumps(batch), "application/json"
            jobs.append(one(mutate(rng, body), content_type))
        await asyncio.gather(*jobs)
        letters = await deadletter.collect(lambda v: v["source"] == "http", expected_letters, timeout_s=60)
    print(f"\n{BODIES} mutated bodies: answers {statuses}; {expected_letters} refusals, {len(letters)} dead letters")
    assert len(letters) == expected_letters
    good = orjson.dumps(pings(unit, rng, 1)[0] | {"kind": "position", "speed_kmh": 10})
    assert (await client.post("/v1/telemetry", content=good)).json()["accepted"] == 1


async def test_mutated_jt808_frames_on_a_terminal_connection_never_stop_the_gateway(
    infra: Infra, settings: CommonSettings, ingest_settings: IngestSettings, ingest: RunningService
) -> None:
    rng = random.Random(1078)
    fleet = await register_fleet(infra.database, units=1, terminals=True)
    unit, phone = fleet.unit_ids[0], fleet.terminal_ids[0]

    async def known() -> bool:
        return phone in ingest.app.state.service.directory.current().by_terminal

    await eventually(known, what="ingest to learn the terminal")
    now = datetime.now(UTC).replace(microsecond=0)
    bodies = {
        MessageId.LOCATION: jt808.encode_location(location(now, 27.24, 111.47)),
        MessageId.BATCH_LOCATION: jt808.encode_batch([location(now, 27.2, 111.4)] * 3, location_type=1),
        MessageId.HEARTBEAT: b"",
    }
    originals = [f for i, (m, b) in enumerate(bodies.items()) for f in jt808.encode_frames(m, b, phone=phone, serial=i)]
    reconnections = 0
    async with TopicTail(settings.kafka, POSITIONS) as positions:
        for _ in range(FRAMES // 200):
            async with Terminal(ingest_settings.jt808_port, phone) as terminal:
                result, code = await terminal.register()
                assert result == RegisterResult.SUCCESS
                auth = jt808.encode_authentication(jt808.Authentication(code), wide=False)
                assert await terminal.general(MessageId.AUTHENTICATE, auth) == Result.SUCCESS
                for _ in range(200):
                    terminal.writer.write(mutate(rng, rng.choice(originals)))
                try:
                    await terminal.writer.drain()
                    await asyncio.sleep(0.05)
                except ConnectionError:
                    reconnections += 1
        final = now - timedelta(seconds=1)
        async with Terminal(ingest_settings.jt808_port, phone) as terminal:
            result, code = await terminal.register()
            auth = jt808.encode_authentication(jt808.Authentication(code), wide=False)
            assert await terminal.general(MessageId.AUTHENTICATE, auth) == Result.SUCCESS
            report = jt808.encode_location(location(final, 27.25, 111.45))
            assert await terminal.general(MessageId.LOCATION, report) == Result.SUCCESS
        await positions.collect(lambda v: v["unit_id"] == unit and v["lat"] == 27.25, 1)
    print(f"\n{FRAMES} mutated JT/T 808 frames over {FRAMES // 200} connections; {reconnections} closed by the gateway")
