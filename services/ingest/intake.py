"""The one path every ping takes, whichever way it came in: validate, then publish the record or the dead letter.

`submit` returns only after Kafka acknowledged every record (acks=all), so a caller that then answers 202 or
commits an offset never loses what it accepted. A Kafka failure raises and the caller must not acknowledge.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from services.ingest.domain.telemetry import PositionWriter, TelemetryRules, accept_decoded_position, accept_ping
from services.ingest.metrics import IngestMetrics
from shared.contract.codec import encode_obj
from shared.contract.deadletter import dead_letter
from shared.contract.registry import UnitDirectory
from shared.contract.schemas import RejectReason, Source
from shared.contract.topics import DEADLETTER, POSITIONS, VIDEO, Producer
from shared.errors import RejectedError, UnavailableError

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Candidate:
    """Not frozen on purpose: one is built per record on the hot path, and frozen dataclasses cost twice as much."""

    value: Any
    """The decoded JSON value, or the `RejectedError` of a payload that is not a ping at all (not JSON, a bad
    frame), which goes straight to the dead-letter topic."""
    payload: bytes | None = None
    """The original bytes for the dead letter; None means re-encode `value` (an item of a JSON array)."""
    key: bytes | None = None
    origin: str | None = None
    decoded: bool = False
    """`value` is the record the compiled JT/T 808 decoder built, valid as it stands (`accept_decoded_position`)."""
    written: bool = False
    """`value` is the `kuaijing.positions` value a `PositionWriter` of this intake accepted and wrote."""


@dataclass(frozen=True, slots=True)
class Rejection:
    index: int
    reason: RejectReason
    error: str


@dataclass(frozen=True, slots=True)
class _Published:
    """A batch handed to the producer: the distinct futures of the Kafka batches its records went into (records
    batched together share one) and what to count once they are acknowledged."""

    sends: set[asyncio.Future[Any]]
    rejections: list[Rejection]
    accepted_kinds: dict[str, int]
    started: float


@dataclass(frozen=True, slots=True)
class Submission:
    rejections: list[Rejection]
    acknowledged: asyncio.Future[None]
    """Done when Kafka acknowledged every record (accepted and dead-lettered); raises if it did not."""


class TelemetryIntake:
    def __init__(
        self,
        *,
        producer: Producer,
        directory: Callable[[], UnitDirectory],
        metrics: IngestMetrics,
        rules: TelemetryRules,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        ack_timeout_s: float = 5.0,
    ) -> None:
        self._producer = producer
        self._ack_timeout_s = ack_timeout_s
        self._directory = directory
        self._metrics = metrics
        self._rules = rules
        self._clock = clock

    async def submit(self, candidates: Sequence[Candidate], *, source: Source) -> list[Rejection]:
        """Validate and publish; returns once Kafka acknowledged every record of the batch, or raises
        `UnavailableError` past `ack_timeout_s` (a broker that died mid-request): the client hears "retry" within a
        bound instead of waiting out the producer's own timeouts, and a ping sent again is stored once.

        Waits on the batches' futures themselves: no task, shield or timeout scope per submission, which were a
        quarter of the JT/T 808 gateway's samples with a few locations a submission (py-spy, 2026-12-01)."""
        published = await self._publish(candidates, source=source)
        if published.sends:
            # `wait`, unlike `gather`, never cancels what it waits on: records batched together share one future
            # with other senders, who must still hear the broker when this one gives up or is cancelled.
            try:
                done, pending = await asyncio.wait(published.sends, timeout=self._ack_timeout_s)
            except asyncio.CancelledError:  # the sender went away (a connection closed): still counted
                self._count_when_settled(published, source=source)
                raise
            if pending:
                self._count_when_settled(published, source=source)  # the client is told to retry now
                raise UnavailableError(
                    f"Kafka did not acknowledge within {self._ack_timeout_s:g} s; retry", field="kafka"
                )
            for delivered in done:
                delivered.result()
        self._count(published, source=source)
        return published.rejections

    async def enqueue(self, candidates: Sequence[Candidate], *, source: Source) -> Submission:
        """Validate and hand every record to the producer; the acknowledgement is awaited separately, so that a
        consumer can validate its next batch while the broker acknowledges this one."""
        published = await self._publish(candidates, source=source)
        acknowledged = asyncio.ensure_future(self._acknowledge(published, source=source))
        return Submission(rejections=published.rejections, acknowledged=acknowledged)

    def position_writer(self, source: Source) -> PositionWriter:
        """For candidates accepted by the compiled decoder before they are submitted (`Candidate.written`): the
        registry, the rules and the clock are this intake's."""
        return PositionWriter(directory=self._directory(), source=source, now=self._clock(), rules=self._rules)

    async def _publish(self, candidates: Sequence[Candidate], *, source: Source) -> _Published:
        now = self._clock()
        directory = self._directory()
        sends: set[asyncio.Future[Any]] = set()
        rejections: list[Rejection] = []
        accepted_kinds: dict[str, int] = {}
        started = time.perf_counter()
        for index, candidate in enumerate(candidates):
            if candidate.written:
                accepted_kinds["position"] = accepted_kinds.get("position", 0) + 1
                sends.add(await self._producer.send(POSITIONS.name, candidate.value, key=candidate.key))
                continue
            try:
                if isinstance(candidate.value, RejectedError):
                    raise candidate.value
                accept = accept_decoded_position if candidate.decoded else accept_ping
                accepted = accept(candidate.value, directory=directory, source=source, now=now, rules=self._rules)
            except RejectedError as rejected:
                rejections.append(Rejection(index, rejected.reason, rejected.error))
                sends.add(await self._dead_letter(candidate, rejected, source=source, now=now))
                continue
            topic = POSITIONS if accepted.kind == "position" else VIDEO
            accepted_kinds[accepted.kind] = accepted_kinds.get(accepted.kind, 0) + 1
            sends.add(
                await self._producer.send(
                    topic.name, topic.encode_fields(accepted.value), key=accepted.unit_id.encode()
                )
            )
        return _Published(sends, rejections, accepted_kinds, started)

    async def _acknowledge(self, published: _Published, *, source: Source) -> None:
        if published.sends:
            # As in `submit`: `wait` leaves the shared batch futures alone when this sender gives up.
            done, _ = await asyncio.wait(published.sends)
            for delivered in done:
                delivered.result()
        self._count(published, source=source)

    def _count_when_settled(self, published: _Published, *, source: Source) -> None:
        """Whatever the broker says after the sender stopped waiting is only counted."""
        later = asyncio.ensure_future(self._acknowledge(published, source=source))
        later.add_done_callback(lambda settled: settled.cancelled() or settled.exception())

    def _count(self, published: _Published, *, source: Source) -> None:
        if published.sends:
            self._metrics.produce_seconds_by(source.value).observe(time.perf_counter() - published.started)
        for kind, count in published.accepted_kinds.items():
            self._metrics.accepted_by(kind, source.value).inc(count)
        for rejection in published.rejections:
            self._metrics.rejected_by(rejection.reason.value, source.value).inc()

    async def _dead_letter(
        self, candidate: Candidate, rejected: RejectedError, *, source: Source, now: datetime
    ) -> asyncio.Future[Any]:
        payload = candidate.payload if candidate.payload is not None else encode_obj(candidate.value)
        letter = dead_letter(payload, rejected, source=source, now=now, origin=candidate.origin)
        log.debug("rejected %s ping (%s): %s", source.value, rejected.reason.value, rejected.error)
        return await self._producer.send(DEADLETTER.name, DEADLETTER.encode(letter), key=candidate.key or b"")
