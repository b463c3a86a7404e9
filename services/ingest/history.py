"""The history writer: `kuaijing.positions` and `kuaijing.video` into PostgreSQL, in its own consumer group.

Offsets are committed only after the batch's transaction committed, so a crash anywhere replays the batch and
the natural keys make the replay a no-op: nothing lost, nothing doubled.
"""

from __future__ import annotations

import logging

from aiokafka import AIOKafkaConsumer

from services.ingest.adapters.history_store import HistoryStore
from services.ingest.metrics import IngestMetrics
from shared.contract.topics import POSITIONS, VIDEO, Producer
from shared.infra.kafka import consumer_lag

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
        fetched = [record for records in batches.values() for record in records]
        positions = [
            p for _, p in await POSITIONS.decode_all([r for r in fetched if r.topic == POSITIONS.name], producer)
        ]
        videos = [v for _, v in await VIDEO.decode_all([r for r in fetched if r.topic != POSITIONS.name], producer)]
        new_positions, new_videos = await store.write(positions, videos)
        await consumer.commit()
        metrics.history_rows.labels("positions").inc(new_positions)
        metrics.history_rows.labels("video_pings").inc(new_videos)
        metrics.set_lag(group, await consumer_lag(consumer))
