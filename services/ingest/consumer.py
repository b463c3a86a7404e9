"""The raw-telemetry consumer: `kuaijing.telemetry.raw` through the same intake as HTTP, committed after acks."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import ConsumerRecord, TopicPartition

from services.ingest.domain.telemetry import PositionWriter
from services.ingest.intake import Candidate, TelemetryIntake
from services.ingest.metrics import IngestMetrics
from services.ingest.terminal_frames import LOCATION_MESSAGES, location_candidates, rejected
from shared import jt808
from shared.contract.codec import decode
from shared.contract.registry import UnitDirectory
from shared.contract.schemas import RejectReason, Source
from shared.contract.topics import JT808_CONTENT_TYPE
from shared.errors import RejectedError
from shared.infra.kafka import consumer_lag

_MAX_IN_FLIGHT = 2
_CONTENT_TYPE = "content-type"


def _candidates(
    batches: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]], directory: UnitDirectory, writer: PositionWriter
) -> list[Candidate]:
    """A fetched batch's records in order: a JSON ping each, or the pings of a relayed JT/T 808 frame (a plain
    location written by the intake's `writer`, as the gateway's are)."""
    candidates: list[Candidate] = []
    for records in batches.values():
        for record in records:
            payload = record.value or b""
            origin = f"{record.topic}/{record.partition}/{record.offset}"
            if record.headers and (_CONTENT_TYPE, JT808_CONTENT_TYPE) in record.headers:
                candidates += _frame_candidates(payload, directory, writer, key=record.key or b"", origin=origin)
                continue
            value: object
            try:
                value = decode(payload)
            except ValueError as e:
                value = RejectedError(RejectReason.INVALID_JSON, f"body: not JSON ({e})")
            candidates.append(Candidate(value=value, payload=payload, key=record.key, origin=origin))
    return candidates


def _frame_candidates(
    payload: bytes, directory: UnitDirectory, writer: PositionWriter, *, key: bytes, origin: str
) -> list[Candidate]:
    """A frame relayed by another gateway: trusted as to who sent it, so no 0x0102 authentication here."""
    wire = payload if payload[:1] == b"\x7e" else b"\x7e" + payload + b"\x7e"
    try:
        frame = jt808.parse_frame(wire)
    except jt808.Jt808Error as e:
        return [rejected(payload, RejectReason.INVALID_FRAME, f"jt808: {e}", key=key, origin=origin)]
    unit = directory.by_terminal.get(frame.header.terminal_id)
    if unit is None:
        error = f"terminal_id: no unit has terminal {frame.header.terminal_id!r}"
        return [rejected(payload, RejectReason.UNKNOWN_TERMINAL, error, key=key, origin=origin)]
    if frame.header.subpackaged:
        error = "jt808: subpackaged frames cannot be reassembled from single raw-topic records"
        return [rejected(payload, RejectReason.UNSUPPORTED_FORMAT, error, key=key, origin=origin)]
    if frame.header.message_id not in LOCATION_MESSAGES:
        return []  # signalling (heartbeats, registrations, A/V attributes) carries no telemetry
    return location_candidates(frame, wire, unit=unit, origin=origin, writer=writer)


async def consume_raw_telemetry(
    *,
    group: str,
    consumer: AIOKafkaConsumer,
    intake: TelemetryIntake,
    directory: Callable[[], UnitDirectory],
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
                candidates = _candidates(batches, directory(), intake.position_writer(Source.KAFKA))
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
