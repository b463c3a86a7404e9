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

from services.ingest.domain.telemetry import TelemetryRules, accept_decoded_position, accept_ping
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


@dataclass(frozen=True, slots=True)
class Rejection:
    index: int
    reason: RejectReason
    error: str


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
        bound instead of waiting out the producer's own timeouts, and a ping sent again is stored once."""
        submission = await self.enqueue(candidates, source=source)
        try:
            async with asyncio.timeout(self._ack_timeout_s):
                await asyncio.shield(submission.acknowledged)
        except TimeoutError as e:
            # Whatever the broker says later is only counted; the client was already told to retry.
            submission.acknowledged.add_done_callback(lambda done: done.cancelled() or done.exception())
            raise UnavailableError(
                f"Kafka did not acknowledge within {self._ack_timeout_s:g} s; retry", field="kafka"
            ) from e
        return submission.rejections

    async def enqueue(self, candidates: Sequence[Candidate], *, source: Source) -> Submission:
        """Validate and hand every record to the producer; the acknowledgement is awaited separately, so that a
        consumer can validate its next batch while the broker acknowledges this one."""
        now = self._clock()
        directory = self._directory()
        sends: list[asyncio.Future[Any]] = []
        rejections: list[Rejection] = []
        accepted_kinds: dict[str, int] = {}
        started = time.perf_counter()
        for index, candidate in enumerate(candidates):
            try:
                if isinstance(candidate.value, RejectedError):
                    raise candidate.value
                accept = accept_decoded_position if candidate.decoded else accept_ping
                accepted = accept(candidate.value, directory=directory, source=source, now=now, rules=self._rules)
            except RejectedError as rejected:
                rejections.append(Rejection(index, rejected.reason, rejected.error))
                sends.append(await self._dead_letter(candidate, rejected, source=source, now=now))
                continue
            topic = POSITIONS if accepted.kind == "position" else VIDEO
            accepted_kinds[accepted.kind] = accepted_kinds.get(accepted.kind, 0) + 1
            sends.append(
                await self._producer.send(
                    topic.name, topic.encode_fields(accepted.value), key=accepted.unit_id.encode()
                )
            )
        acknowledged = asyncio.ensure_future(
            self._acknowledge(
                sends, started=started, accepted_kinds=accepted_kinds, rejections=rejections, source=source
            )
        )
        return Submission(rejections=rejections, acknowledged=acknowledged)

    async def _acknowledge(
        self,
        sends: list[asyncio.Future[Any]],
        *,
        started: float,
        accepted_kinds: dict[str, int],
        rejections: list[Rejection],
        source: Source,
    ) -> None:
        if sends:
            # Records batched together share one future, with other senders too: `wait`, unlike `gather`, leaves
            # it alone when this sender gives up (a consumer stopping), so the others still hear the broker.
            done, _ = await asyncio.wait(set(sends))
            for delivered in done:
                delivered.result()
            self._metrics.produce_seconds.labels(source.value).observe(time.perf_counter() - started)
        for kind, count in accepted_kinds.items():
            self._metrics.accepted.labels(kind, source.value).inc(count)
        for rejection in rejections:
            self._metrics.rejected.labels(rejection.reason.value, source.value).inc()

    async def _dead_letter(
        self, candidate: Candidate, rejected: RejectedError, *, source: Source, now: datetime
    ) -> asyncio.Future[Any]:
        payload = candidate.payload if candidate.payload is not None else encode_obj(candidate.value)
        letter = dead_letter(payload, rejected, source=source, now=now, origin=candidate.origin)
        log.debug("rejected %s ping (%s): %s", source.value, rejected.reason.value, rejected.error)
        return await self._producer.send(DEADLETTER.name, DEADLETTER.encode(letter), key=candidate.key or b"")
