"""`kuaijing.calls` into the analytics tables, committed after the database transaction (at least once; the
tables deduplicate, so a replay changes no figure)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer
from pydantic import ValidationError

from services.analytics.adapters.store import AnalyticsStore
from shared.contract.codec import encode
from shared.contract.deadletter import dead_letter
from shared.contract.schemas import CallEventMessage, RejectReason, Source
from shared.contract.topics import DEADLETTER
from shared.errors import RejectedError
from shared.infra.kafka import Producer

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
                try:
                    events.append(CallEventMessage.model_validate_json(record.value or b""))
                except ValidationError as e:
                    origin = f"{record.topic}/{record.partition}/{record.offset}"
                    log.warning("skipped a bad call event at %s: %s", origin, e)
                    letter = dead_letter(
                        record.value or b"", RejectedError(RejectReason.INVALID_VALUE, str(e)), source=Source.KAFKA,
                        now=datetime.now(UTC), origin=origin,
                    )  # fmt: skip
                    await (await producer.send(DEADLETTER.name, encode(letter), key=record.key or b""))
        new = await store.record(events)
        await consumer.commit()
        log.debug("stored %s new call events of %s", new, len(events))
