"""The raw-telemetry consumer: `kuaijing.telemetry.raw` through the same intake as HTTP, committed after acks."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import ConsumerRecord

from services.ingest.domain.telemetry import RejectReason
from services.ingest.intake import Candidate, TelemetryIntake, Undecodable
from services.ingest.metrics import IngestMetrics
from shared.codec import decode
from shared.kafka import consumer_lag
from shared.schemas import Source
from shared.topics import JT808_CONTENT_TYPE

RAW_GROUP = "kuaijing-ingest-raw"


def _candidate(record: ConsumerRecord[bytes, bytes]) -> Candidate:
    payload = record.value or b""
    origin = f"{record.topic}/{record.partition}/{record.offset}"
    headers = dict(record.headers or ())
    value: object
    if headers.get("content-type") == JT808_CONTENT_TYPE:
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
    consumer: AIOKafkaConsumer,
    intake: TelemetryIntake,
    metrics: IngestMetrics,
    batch_size: int,
    poll_ms: int,
) -> None:
    while True:
        batches = await consumer.getmany(timeout_ms=poll_ms, max_records=batch_size)
        candidates = [_candidate(record) for records in batches.values() for record in records]
        if candidates:
            await intake.submit(candidates, source=Source.KAFKA)
            await consumer.commit()
        metrics.set_lag(RAW_GROUP, await consumer_lag(consumer))
