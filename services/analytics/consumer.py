"""`kuaijing.calls` into the analytics tables, committed after the database transaction (at least once; the
tables deduplicate, so a replay changes no figure). Replicas share the topic's partitions as one consumer group."""

from __future__ import annotations

import logging

from aiokafka import AIOKafkaConsumer

from services.analytics.adapters.store import AnalyticsStore
from services.analytics.metrics import AnalyticsMetrics
from shared.contract.schemas import CallEventMessage
from shared.contract.topics import CALLS, Producer
from shared.infra.kafka import consumer_lag

log = logging.getLogger(__name__)


async def consume_call_events(
    *,
    group: str,
    consumer: AIOKafkaConsumer,
    store: AnalyticsStore,
    producer: Producer,
    metrics: AnalyticsMetrics,
    batch_size: int,
    poll_ms: int,
) -> None:
    while True:
        batches = await consumer.getmany(timeout_ms=poll_ms, max_records=batch_size)
        if batches:
            events: list[CallEventMessage] = []
            for records in batches.values():
                for record in records:
                    if (event := await CALLS.decode_or_dead_letter(record, producer)) is not None:
                        events.append(event)
                    else:
                        metrics.dead_letters.inc()
            new = await store.record(events)
            await consumer.commit()
            metrics.events_applied.inc(new)
            metrics.facts_recomputed.inc(len({e.call_id for e in events}))
            log.debug("stored %s new call events of %s", new, len(events))
        metrics.set_lag(group, await consumer_lag(consumer))
