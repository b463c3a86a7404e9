"""The dispatcher's Kafka inputs: the tails of `kuaijing.positions`, `kuaijing.unit-status` and `kuaijing.calls`.

None uses a consumer group: every replica reads every partition, because each holds the whole live map and every
open call. After a restart memory is rebuilt from PostgreSQL; the positions tail resumes where the history writer's
group has committed (everything before that is already in `unit_latest_positions`), the status and call tails at
their ends as they were just before the rebuild. Records are applied in event time and idempotently, so reading
some twice is harmless.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from services.dispatcher.service import DispatchService
from shared.contract.schemas import CallEventMessage, PositionRecord
from shared.contract.topics import CALLS, POSITIONS, UNIT_STATUS, Producer, Topic
from shared.infra.kafka import Kafka, client_options, make_admin

log = logging.getLogger(__name__)


async def history_offsets(kafka: Kafka, group: str) -> dict[TopicPartition, int]:
    admin = make_admin(kafka, client_id="kuaijing-dispatcher-admin")
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    except KafkaError:
        return {}
    finally:
        await admin.close()
    return {tp: meta.offset for tp, meta in offsets.items() if tp.topic == POSITIONS.name and meta.offset >= 0}


GATHERED_FETCH: dict[str, Any] = {"fetch_min_bytes": 64 * 1024, "fetch_max_wait_ms": 100}
"""For the calls tail: the broker answers a fetch once 64 KiB are waiting or 100 ms have passed. With aiokafka's
defaults it answers as soon as one record is there, so on a busy night the tail fetched after every batch the outbox
relay published, and those fetches cost about a twentieth of each call's CPU (session 20). Another replica's call
event now reaches this one's memory and consoles up to 100 ms later; the replica's own it applies as it commits."""


def tail_consumer(kafka: Kafka, *, gathered: bool = False) -> AIOKafkaConsumer:
    """A consumer for a tail every replica reads whole; `gathered` fetches as `GATHERED_FETCH` says."""
    return AIOKafkaConsumer(
        **client_options(kafka),
        client_id="kuaijing-dispatcher",
        group_id=None,
        enable_auto_commit=False,
        max_partition_fetch_bytes=4 * 1024 * 1024,
        **(GATHERED_FETCH if gathered else {}),
    )


async def assign_from(
    consumer: AIOKafkaConsumer, topic: Topic[Any], start: dict[TopicPartition, int] | None
) -> list[TopicPartition]:
    """Assign every partition; seek to `start` where given, else to the beginning (None: to the end, resolved now,
    so that what is published after this call is read even if it comes before the first fetch)."""
    partitions = [TopicPartition(topic.name, p) for p in range(topic.partitions)]
    consumer.assign(partitions)
    if start is None:
        await consumer.seek_to_end(*partitions)
        for tp in partitions:
            await consumer.position(tp)
        return partitions
    await consumer.seek_to_beginning(*[tp for tp in partitions if tp not in start])
    for tp, offset in start.items():
        consumer.seek(tp, offset)
    return partitions


class PositionSink(Protocol):
    async def on_position(self, record: PositionRecord) -> None: ...


async def follow_positions(
    *,
    consumer: AIOKafkaConsumer,
    partitions: list[TopicPartition],
    service: PositionSink,
    caught_up: asyncio.Event,
    batch_size: int,
    poll_ms: int,
) -> None:
    """Apply the tail to the live map. If applying a record fails (recording a GPS arrival needs PostgreSQL), every
    partition is rewound to its first record not yet applied before the error ends the loop, so the restarted loop
    reads them again instead of skipping the rest of the fetched batch; applying a record twice changes nothing.
    A record that cannot be decoded is skipped: the history writer dead-letters it."""
    ends = await consumer.end_offsets(partitions)
    while True:
        batches = await consumer.getmany(timeout_ms=poll_ms, max_records=batch_size)
        applied: dict[TopicPartition, int] = {}
        try:
            for tp, records in batches.items():
                for record, position in await POSITIONS.decode_all(records, None):
                    await service.on_position(position)
                    applied[tp] = record.offset + 1
                if records:
                    applied[tp] = records[-1].offset + 1
        except Exception:
            for tp, records in batches.items():
                if records:
                    consumer.seek(tp, applied.get(tp, records[0].offset))
            raise
        if not caught_up.is_set() and all([await consumer.position(tp) >= ends[tp] for tp in partitions]):
            caught_up.set()
            log.info("positions tail caught up")


class CallEventSink(Protocol):
    async def on_call_event(self, message: CallEventMessage) -> None: ...


async def follow_calls(*, consumer: AIOKafkaConsumer, service: CallEventSink, poll_ms: int) -> None:
    """Call events from every replica's outbox: calls created, assigned or closed elsewhere reach this replica's
    memory and its live subscribers. A record that cannot be decoded is skipped: analytics dead-letters it."""
    while True:
        batches = await consumer.getmany(timeout_ms=poll_ms)
        for records in batches.values():
            for record in records:
                for _, message in await CALLS.decode_all([record], None):
                    await service.on_call_event(message)


async def follow_statuses(
    *, consumer: AIOKafkaConsumer, service: DispatchService, producer: Producer, poll_ms: int
) -> None:
    """Statuses from every replica's outbox; one that cannot be decoded is dead-lettered like any other."""
    while True:
        batches = await consumer.getmany(timeout_ms=poll_ms)
        for records in batches.values():
            for record in records:
                if (event := await UNIT_STATUS.decode_or_dead_letter(record, producer)) is not None:
                    service.on_unit_status(event)
