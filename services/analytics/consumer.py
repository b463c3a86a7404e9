"""`kuaijing.calls` and `kuaijing.coverage` into the analytics tables, committed after the database transaction (at
least once; the tables deduplicate, so a replay changes no figure). Replicas share the topics' partitions as one
consumer group."""

from __future__ import annotations

import logging

from aiokafka import AIOKafkaConsumer

from services.analytics.adapters.store import AnalyticsStore
from services.analytics.metrics import AnalyticsMetrics
from shared.contract.topics import CALLS, COVERAGE, Producer
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
            received = [r for records in batches.values() for r in records]
            calls = [r for r in received if r.topic == CALLS.name]
            coverage = [r for r in received if r.topic == COVERAGE.name]
            events = [event for _, event in await CALLS.decode_all(calls, producer)]
            samples = [sample for _, sample in await COVERAGE.decode_all(coverage, producer)]
            metrics.dead_letters.inc(len(calls) - len(events) + len(coverage) - len(samples))
            new = await store.record(events)
            await store.record_coverage(samples)
            await consumer.commit()
            metrics.events_applied.inc(new)
            metrics.facts_recomputed.inc(len({e.call_id for e in events}))
            log.debug("stored %s new call events of %s", new, len(events))
        metrics.set_lag(group, await consumer_lag(consumer))
