"""Hostile HTTP bodies: nesting deeper than the parser allows, invalid UTF-8, NaN and Infinity, numbers beyond a
double, duplicate keys. A body that is not JSON is a 400 and is dead-lettered whole; in NDJSON each bad line is
dead-lettered with its reason and the good lines beside it are kept; the service keeps serving."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import orjson

from shared.contract.topics import DEADLETTER, POSITIONS
from shared.settings import CommonSettings
from tests.conftest import Fleet, RunningService
from tests.harness import TopicTail

DEEP = b"[" * 100_000 + b"]" * 100_000
"""Far past orjson's depth limit of 1,024: refused by the parser, never by a Python recursion error."""


def ping_line(unit: str, lat: float, *, seconds_ago: int) -> bytes:
    ts = (datetime.now(UTC) - timedelta(seconds=seconds_ago)).isoformat()
    return orjson.dumps({"kind": "position", "unit_id": unit, "ts": ts, "lat": lat, "lon": 111.4})


async def test_bodies_that_are_not_json_are_a_400_dead_lettered_whole(
    settings: CommonSettings, client: httpx.AsyncClient, fleet: Fleet
) -> None:
    unit = fleet.unit_ids[0]
    valid = ping_line(unit, 27.2, seconds_ago=5)
    bodies = {
        "deep": DEEP,
        "utf8": valid.replace(unit.encode(), unit.encode() + b"\xff\xfe"),
        "nan": valid.replace(b"27.2", b"NaN"),
        "infinity": valid.replace(b"27.2", b"-Infinity"),
        "huge": valid.replace(b"27.2", b"1e400"),
    }
    async with TopicTail(settings.kafka, DEADLETTER) as deadletter:
        for name, body in bodies.items():
            response = await client.post("/v1/telemetry", content=body, headers={"Content-Type": "application/json"})
            assert response.status_code == 400, (name, response.text)
            assert response.json()["detail"]["field"] == "body"
        letters = await deadletter.collect(
            lambda v: v["reason"] == "invalid_json" and v["source"] == "http" and len(v["payload"]) > 0, len(bodies)
        )
    assert len(letters) >= len(bodies)
    assert (await client.post("/v1/telemetry", content=valid)).json()["accepted"] == 1


async def test_in_ndjson_each_hostile_line_is_dead_lettered_and_the_good_lines_are_kept(
    settings: CommonSettings, client: httpx.AsyncClient, fleet: Fleet
) -> None:
    unit = fleet.unit_ids[1]
    good = [ping_line(unit, lat, seconds_ago=10 + i) for i, lat in enumerate((27.21, 27.211, 27.212))]
    hostile = [
        DEEP,
        good[0].replace(b"27.21", b"27.5").replace(b'"unit_id"', b'"unit_\xc3\x28id"'),
        good[0].replace(b"27.21", b"NaN"),
        good[0].replace(b"27.21", b"1e400"),
        good[0].replace(b"27.21", b'{"a": 1}'),
    ]
    body = b"\n".join([good[0], *hostile[:3], good[1], *hostile[3:], good[2]])
    async with TopicTail(settings.kafka, DEADLETTER) as deadletter, TopicTail(settings.kafka, POSITIONS) as positions:
        response = await client.post("/v1/telemetry", content=body, headers={"Content-Type": "application/x-ndjson"})
        assert response.status_code == 202, response.text
        answer = response.json()
        assert answer["accepted"] == 3
        assert [r["index"] for r in answer["rejected"]] == [1, 2, 3, 5, 6]
        stored = await positions.collect(lambda v: v["unit_id"] == unit, 3)
        letters = await deadletter.collect(lambda v: v["source"] == "http" and unit in v.get("payload", ""), 3)
    assert sorted(v["lat"] for v in stored) == [27.21, 27.211, 27.212]
    assert sorted(v["reason"] for v in letters) == ["invalid_json", "invalid_json", "invalid_value"], letters


async def test_a_duplicate_key_takes_its_last_value_as_javascript_and_orjson_do(
    settings: CommonSettings, client: httpx.AsyncClient, fleet: Fleet, ingest: RunningService
) -> None:
    """RFC 8259 leaves duplicate names to the parser; ingest documents last-wins, and a later value that is invalid
    rejects the ping whatever came first."""
    unit, other = fleet.unit_ids[2], fleet.unit_ids[0]
    ts = (datetime.now(UTC) - timedelta(seconds=7)).isoformat()
    twice = f'{{"kind":"position","unit_id":"{other}","unit_id":"{unit}","ts":"{ts}","lat":27.3,"lon":111.4}}'
    bad_last = f'{{"kind":"position","unit_id":"{unit}","ts":"{ts}","lat":27.3,"lat":200,"lon":111.4}}'
    async with TopicTail(settings.kafka, POSITIONS) as positions:
        assert (await client.post("/v1/telemetry", content=twice)).json()["accepted"] == 1
        [record] = await positions.collect(lambda v: v["ts"].startswith(ts[:19]) and v["lat"] == 27.3, 1)
    assert record["unit_id"] == unit
    answer = (await client.post("/v1/telemetry", content=bad_last)).json()
    assert answer["accepted"] == 0
    assert "lat" in answer["rejected"][0]["error"]
