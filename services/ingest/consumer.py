"""The raw-telemetry consumer: `kuaijing.telemetry.raw` through the same intake as HTTP, committed after acks."""

from __future__ import annotations

import asyncio
from collections import deque

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import ConsumerRecord, TopicPartition

from services.ingest.domain.telemetry import RejectReason
from services.ingest.intake import Candidate, TelemetryIntake, Undecodable
from services.ingest.metrics import IngestMetrics
from shared.codec import decode
from shared.kafka import consumer_lag
from shared.schemas import Source
from shared.topics import JT808_CONTENT_TYPE

_MAX_IN_FLIGHT = 2
_CONTENT_TYPE = "content-type"


def _candidate(record: ConsumerRecord[bytes, bytes]) -> Candidate:
    payload = record.value or b""
    origin = f"{record.topic}/{record.partition}/{record.offset}"
    value: object
    if record.headers and (_CONTENT_TYPE, JT808_CONTENT_TYPE) in record.headers:
        value = Undecodable(
            RejectReason.UNSUPPORTED_FORMAT, "JT/T 808 frames are not decoded by this ingest version yet"
        )
    else:
        try:
            value = decode(payload)
        except ValueError as e:
            value = Undecodable(RejectReason.INVALID_JSON, f"body: not JSON ({e})")
    return Candidate(value=value, payload=payload, key=record.key, origin=origin)


async def consume_raw_telemetry(
    *,
    group: str,
    consumer: AIOKafkaConsumer,
    intake: TelemetryIntake,
    metrics: IngestMetrics,
    batch_size: int,
    poll_ms: int,
) -> None:
    """Batches are validated while the previous one is being acknowledged; offsets are committed strictly in
    order, each only after its own batch was acknowledged (at-least-once, never ahead of the data)."""
    in_flight: deque[tuple[asyncio.Future[None], dict[TopicPartition, int]]] = deque()
    try:
        while True:
            batches = await consumer.getmany(timeout_ms=0 if in_flight else poll_ms, max_records=batch_size)
            if batches:
                candidates = [_candidate(record) for records in batches.values() for record in records]
                submission = await intake.enqueue(candidates, source=Source.KAFKA)
                offsets = {tp: records[-1].offset + 1 for tp, records in batches.items()}
                in_flight.append((submission.acknowledged, offsets))
            while in_flight and (not batches or len(in_flight) > _MAX_IN_FLIGHT or in_flight[0][0].done()):
                acknowledged, offsets = in_flight.popleft()
                await acknowledged
                await consumer.commit(offsets)
            metrics.set_lag(group, await consumer_lag(consumer))
    finally:
        for acknowledged, _ in in_flight:
            acknowledged.cancel()
