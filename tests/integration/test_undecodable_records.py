"""A record of a typed topic that cannot be decoded is dead-lettered with its origin, through the one path beside the
topic declarations, once: by the topic's owner (the history writer for positions, analytics for call events, each a
consumer group), while the dispatcher's tails skip it; and every reader goes on with the good records beside it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from shared.contract.topics import CALLS, DEADLETTER, POSITIONS, UNIT_STATUS, Topic
from shared.settings import CommonSettings
from tests.conftest import Fleet, RunningService, console
from tests.harness import TopicTail, eventually
from tests.integration.test_analytics import metric

pytestmark = pytest.mark.integration


async def _send(settings: CommonSettings, topic: Topic[Any], value: bytes, key: bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka, acks="all")
    try:
        await producer.start()
        await producer.send_and_wait(topic.name, value, key=key)
    finally:
        await producer.stop()


async def only_letter(deadletter: TopicTail, marker: str) -> dict[str, Any]:
    """The one dead letter of the record marked `marker`: a second would have arrived within a few seconds."""
    [letter] = await deadletter.collect(lambda v: marker in v["payload"], 1)
    with pytest.raises(AssertionError, match="1 of 2 expected records"):
        await deadletter.collect(lambda v: marker in v["payload"], 2, timeout_s=3)
    return letter


@pytest.mark.parametrize("topic", [UNIT_STATUS, POSITIONS], ids=["unit-status", "positions"])
async def test_a_bad_record_is_dead_lettered_once_and_the_dispatcher_applies_the_next_one(
    topic: Topic[Any], settings: CommonSettings, dispatcher: RunningService, history_writer: None, crew: Fleet
) -> None:
    """Unit statuses are dead-lettered by the dispatcher (no group reads them; this test runs one replica),
    positions by the history writer, not by the dispatcher's tail as well."""
    unit = crew.unit_ids[0]
    marker = f"not-a-record-{uuid.uuid4().hex[:8]}"
    async with TopicTail(settings.kafka, DEADLETTER) as deadletter:
        await _send(settings, topic, f'{{"unit_id": "{unit}", "junk": "{marker}"}}'.encode(), unit.encode())
        letter = await only_letter(deadletter, marker)
    assert letter["reason"] == "invalid_value"
    assert letter["origin"].startswith(f"{topic.name}/")
    assert letter["source"] == "kafka"

    status = {"unit_id": unit, "status": "off_duty", "call_id": None, "ts": datetime.now(UTC).isoformat()}
    await _send(settings, UNIT_STATUS, orjson.dumps(status), unit.encode())

    async def applied() -> bool:
        async with console(dispatcher, "viewer") as c:
            return bool((await c.get(f"/v1/units/{unit}")).json()["status"] == "off_duty")

    await eventually(applied, what="the good status after the bad record to be applied")


async def test_analytics_dead_letters_a_call_event_it_cannot_decode_and_the_dispatcher_leaves_it_to_it(
    settings: CommonSettings, analytics: RunningService, dispatcher: RunningService
) -> None:
    marker = f"not-a-call-event-{uuid.uuid4().hex[:8]}"
    async with TopicTail(settings.kafka, DEADLETTER) as deadletter:
        await _send(settings, CALLS, f'{{"call_id": "{marker}"}}'.encode(), marker.encode())
        letter = await only_letter(deadletter, marker)
    assert (letter["reason"], letter["source"]) == ("invalid_value", "kafka")
    assert letter["origin"].startswith(f"{CALLS.name}/")
    async with console(analytics, "viewer") as c:

        async def counted() -> bool:
            return metric((await c.get("/metrics")).text, "kuaijing_analytics_dead_letters_total") >= 1

        await eventually(counted, what="analytics to count its dead letter")
