"""`kuaijing.calls` into the analytics tables, committed after the database transaction (at least once; the
tables deduplicate, so a replay changes no figure)."""

from __future__ import annotations

import logging

from aiokafka import AIOKafkaConsumer

from services.analytics.adapters.store import AnalyticsStore
from shared.contract.schemas import CallEventMessage
from shared.contract.topics import CALLS, Producer

log = logging.getLogger(__name__)


async def consume_call_events(
    *, consumer: AIOKafkaConsumer, store: AnalyticsStore, producer: Producer, batch_size: int, poll_ms: int
) -> None:
    while True:
        batches = await consumer.getmany(timeout_ms=poll_ms, max_records=batch_size)
        if not batches:
            continue
        events: list[CallEventMessage] = []
        for records in batches.values():
            for record in records:
                if (event := await CALLS.decode_or_dead_letter(record, producer)) is not None:
                    events.append(event)
        new = await store.record(events)
        await consumer.commit()
        log.debug("stored %s new call events of %s", new, len(events))
