"""The single declaration of every Kafka topic: name, key, value model, partitions and retention, and how its
values are encoded, decoded, or dead-lettered when they cannot be decoded.

Nobody else writes a topic string or picks a value model by hand. Keys are unit ids (or call ids) so one unit's
records stay ordered in one partition (DESIGN.md, "Data flow").
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, Protocol, TypeVar

from pydantic import BaseModel, ValidationError

from shared.contract import codec
from shared.contract.deadletter import dead_letter
from shared.contract.schemas import (
    AdviceMessage,
    CallEventMessage,
    CoverageSample,
    DeadLetter,
    PositionRecord,
    RejectReason,
    Source,
    UnitStatusEvent,
    VideoRecord,
)
from shared.errors import RejectedError

log = logging.getLogger(__name__)

_DAY_MS = 24 * 60 * 60 * 1000

M = TypeVar("M", bound=BaseModel)
R = TypeVar("R", bound="Record")


class Producer(Protocol):
    """The slice of a Kafka producer the services use: send returns once the record is queued, and its future
    resolves when the broker acknowledged it."""

    async def send(self, topic: str, value: bytes, key: bytes | None = None) -> asyncio.Future[Any]: ...


class Record(Protocol):
    """The slice of a consumed Kafka record that decoding needs."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...


@dataclass(frozen=True, slots=True)
class Topic(Generic[M]):
    name: str
    key: str
    value: type[M] | None
    """None for a topic whose records are not one model (the raw telemetry topic: JSON pings or JT/T 808 frames)."""
    partitions: int
    retention_ms: int | None = None
    dead_letter_owner: str = "every consumer"
    """Who dead-letters a record of this topic that cannot be decoded; other readers skip it."""

    def config(self) -> dict[str, str]:
        return {} if self.retention_ms is None else {"retention.ms": str(self.retention_ms)}

    def encode(self, message: M) -> bytes:
        return codec.encode(message)

    def encode_fields(self, fields: Mapping[str, object]) -> bytes:
        """A value given as a mapping of exactly the model's fields, already validated by the caller (the ingest
        hot path, where building the model again would cost more than the rest of the ping)."""
        return codec.encode_obj(fields)

    def decode(self, data: bytes | None) -> M:
        """The record's value as the topic's model; `RejectedError` (invalid_value) when it is not one."""
        if self.value is None:
            raise TypeError(f"{self.name} has no single value model")
        try:
            return self.value.model_validate_json(data or b"")
        except ValidationError as e:
            raise RejectedError(RejectReason.INVALID_VALUE, str(e)) from e

    async def decode_or_dead_letter(self, record: Record, dead_letters: Producer) -> M | None:
        """The decoded value, or None after the record went to the dead-letter topic (acknowledged) with its
        reason and origin: one bad record never stops a consumer, and is never dropped silently."""
        decoded = await self.decode_all([record], dead_letters)
        return decoded[0][1] if decoded else None

    async def decode_all(self, records: Sequence[R], dead_letters: Producer | None) -> list[tuple[R, M]]:
        """The records that decode, in order, each with its value; the rest go to the dead-letter topic with their
        reason and origin, handed over together and acknowledged once (a run of foreign records on a topic costs one
        round trip to the broker, not one each). With no `dead_letters` producer the rest are only skipped and
        logged: a reader that is not the topic's `dead_letter_owner` leaves the letter to the owner, so a bad record
        is dead-lettered once, not once per service that reads it."""
        decoded: list[tuple[R, M]] = []
        sent: list[asyncio.Future[Any]] = []
        bad, first = 0, ""
        for record in records:
            try:
                decoded.append((record, self.decode(record.value)))
            except RejectedError as e:
                bad += 1
                origin = f"{record.topic}/{record.partition}/{record.offset}"
                first = first or f"{origin}: {e}"
                if dead_letters is None:
                    continue
                letter = dead_letter(record.value or b"", e, source=Source.KAFKA, now=datetime.now(UTC), origin=origin)
                sent.append(await dead_letters.send(DEADLETTER.name, DEADLETTER.encode(letter), key=record.key or b""))
        if sent:
            log.warning("dead-lettered %d undecodable record(s) of %s, the first at %s", len(sent), self.name, first)
            await asyncio.gather(*sent)
        elif bad:
            log.warning(
                "skipped %d undecodable record(s) of %s, the first at %s (dead-lettered by %s)",
                bad, self.name, first, self.dead_letter_owner,
            )  # fmt: skip
        return decoded


TELEMETRY_RAW: Topic[BaseModel] = Topic(
    "kuaijing.telemetry.raw", key="unit id or terminal id, may be empty", value=None, partitions=6
)
POSITIONS = Topic(
    "kuaijing.positions", key="unit_id", value=PositionRecord, partitions=12,
    dead_letter_owner="ingest's history writer (one consumer group)",
)  # fmt: skip
VIDEO = Topic("kuaijing.video", key="unit_id", value=VideoRecord, partitions=6)
DEADLETTER = Topic("kuaijing.deadletter", key="as received", value=DeadLetter, partitions=3, retention_ms=14 * _DAY_MS)
CALLS = Topic(
    "kuaijing.calls", key="call_id", value=CallEventMessage, partitions=6,
    dead_letter_owner="analytics (one consumer group)",
)  # fmt: skip
UNIT_STATUS = Topic(
    "kuaijing.unit-status", key="unit_id", value=UnitStatusEvent, partitions=6,
    dead_letter_owner="every dispatcher replica (no group reads it: one letter a replica, the same origin on each)",
)  # fmt: skip
ADVICE = Topic("kuaijing.advice", key="unit_id", value=AdviceMessage, partitions=3)
"""Extension (issue 14): move-up advice."""
COVERAGE = Topic("kuaijing.coverage", key="zone_class", value=CoverageSample, partitions=1)
"""Extension (issue 14): each class's coverage of the promise, sampled by the dispatcher, for reports."""

ALL_TOPICS: tuple[Topic[Any], ...] = (
    TELEMETRY_RAW, POSITIONS, VIDEO, DEADLETTER, CALLS, UNIT_STATUS, ADVICE, COVERAGE
)  # fmt: skip

JT808_CONTENT_TYPE = b"application/jt808"
"""Record header value marking a raw JT/T 808 frame on `kuaijing.telemetry.raw` (contract section 2)."""
