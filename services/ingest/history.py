"""The history writer: `kuaijing.positions` and `kuaijing.video` into PostgreSQL, in its own consumer group.

Offsets are committed only after the batch's transaction committed, so a crash anywhere replays the batch and
the natural keys make the replay a no-op: nothing lost, nothing doubled.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer
from pydantic import ValidationError

from services.ingest.adapters.history_store import HistoryStore
from services.ingest.metrics import IngestMetrics
from shared.contract.codec import encode
from shared.contract.deadletter import dead_letter
from shared.contract.schemas import PositionRecord, RejectReason, Source, VideoRecord
from shared.contract.topics import DEADLETTER, POSITIONS, VIDEO
from shared.errors import RejectedError
from shared.infra.kafka import Producer, consumer_lag

log = logging.getLogger(__name__)


async def write_history(
    *,
    group: str,
    consumer: AIOKafkaConsumer,
    store: HistoryStore,
    producer: Producer,
    metrics: IngestMetrics,
    batch_size: int,
    poll_ms: int,
) -> None:
    while True:
        batches = await consumer.getmany(timeout_ms=poll_ms, max_records=batch_size)
        if not batches:
            metrics.set_lag(group, await consumer_lag(consumer))
            continue
        positions: list[PositionRecord] = []
        videos: list[VideoRecord] = []
        undecodable = []
        for records in batches.values():
            for record in records:
                try:
                    if record.topic == POSITIONS.name:
                        positions.append(PositionRecord.model_validate_json(record.value))
                    elif record.topic == VIDEO.name:
                        videos.append(VideoRecord.model_validate_json(record.value))
                except (ValidationError, TypeError) as e:
                    undecodable.append((record, str(e)))
        new_positions, new_videos = await store.write(positions, videos)
        for record, error in undecodable:
            origin = f"{record.topic}/{record.partition}/{record.offset}"
            log.warning("history writer skipped an undecodable record at %s: %s", origin, error)
            letter = dead_letter(
                record.value or b"",
                RejectedError(RejectReason.INVALID_VALUE, error),
                source=Source.KAFKA,
                now=datetime.now(UTC),
                origin=origin,
            )
            await (await producer.send(DEADLETTER.name, encode(letter), key=record.key or b""))
        await consumer.commit()
        metrics.history_rows.labels("positions").inc(new_positions)
        metrics.history_rows.labels("video_pings").inc(new_videos)
        metrics.set_lag(group, await consumer_lag(consumer))
