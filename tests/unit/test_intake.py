"""The one intake path over an in-memory producer: what is published where, what is answered, what is counted,
and that nothing is answered as accepted before the broker acknowledged it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from services.ingest.domain.telemetry import TelemetryRules
from services.ingest.intake import Candidate, TelemetryIntake
from services.ingest.metrics import IngestMetrics
from shared import jt808
from shared.contract.registry import UnitDirectory, UnitKind, UnitRef
from shared.contract.schemas import PositionRecord, RejectReason, Source, VideoRecord
from shared.contract.topics import DEADLETTER, POSITIONS, VIDEO
from shared.errors import RejectedError, UnavailableError
from tests.unit.fakes import FakeProducer

NOW = datetime(2026, 11, 30, 20, 0, tzinfo=UTC)
DIRECTORY = UnitDirectory.of(1, [UnitRef("U1", "P1", UnitKind.PATROL_CAR, None)])


def position(**changes: object) -> dict[str, object]:
    return {"kind": "position", "unit_id": "U1", "ts": "2026-11-30T19:59:58Z", "lat": 27.24, "lon": 111.47} | changes


def intake_over(producer: FakeProducer, metrics: IngestMetrics | None = None) -> TelemetryIntake:
    return TelemetryIntake(
        producer=producer,
        directory=lambda: DIRECTORY,
        metrics=metrics or IngestMetrics(),
        rules=TelemetryRules(max_future_skew=timedelta(seconds=300)),
        clock=lambda: NOW,
    )


async def test_accepted_pings_go_to_their_topic_keyed_by_unit_with_what_ingest_adds() -> None:
    producer = FakeProducer()
    video = {"kind": "video", "unit_id": "U1", "ts": "2026-11-30T19:59:58Z", "channel": 1, "state": "streaming"}
    rejections = await intake_over(producer).submit(
        [Candidate(value=position()), Candidate(value=video)], source=Source.HTTP
    )
    assert rejections == []
    [(value, key)] = producer.on(POSITIONS.name)
    record = POSITIONS.decode(value)
    assert isinstance(record, PositionRecord)
    assert (key, record.platform_id, record.source, record.received_at) == (b"U1", "P1", Source.HTTP, NOW)
    [(video_value, _)] = producer.on(VIDEO.name)
    assert isinstance(VIDEO.decode(video_value), VideoRecord)


async def test_a_bad_ping_is_dead_lettered_with_its_reason_and_the_good_one_beside_it_is_kept() -> None:
    producer = FakeProducer()
    metrics = IngestMetrics()
    candidates = [
        Candidate(value=position(lat=123.0), payload=b"original bytes", key=b"U1", origin="test/0/7"),
        Candidate(value=position(unit_id="U-unknown")),
        Candidate(value=position()),
        Candidate(value=RejectedError(RejectReason.INVALID_JSON, "line: not JSON"), payload=b"{oops"),
    ]
    rejections = await intake_over(producer, metrics).submit(candidates, source=Source.KAFKA)
    assert [(r.index, r.reason) for r in rejections] == [
        (0, RejectReason.OUT_OF_RANGE),
        (1, RejectReason.UNKNOWN_UNIT),
        (3, RejectReason.INVALID_JSON),
    ]
    assert len(producer.on(POSITIONS.name)) == 1
    letters = [DEADLETTER.decode(value) for value, _ in producer.on(DEADLETTER.name)]
    assert [(d.reason, d.origin) for d in letters] == [
        ("out_of_range", "test/0/7"),
        ("unknown_unit", None),
        ("invalid_json", None),
    ]
    assert letters[0].payload == "original bytes"
    assert orjson.loads(letters[1].payload)["unit_id"] == "U-unknown"  # an array item is re-encoded
    assert metrics.rejected.labels("out_of_range", "kafka")._value.get() == 1
    assert metrics.accepted.labels("position", "kafka")._value.get() == 1


async def test_nothing_is_answered_as_accepted_when_the_broker_did_not_acknowledge() -> None:
    producer = FakeProducer(refuse=True)
    metrics = IngestMetrics()
    with pytest.raises(UnavailableError):
        await intake_over(producer, metrics).submit([Candidate(value=position())], source=Source.HTTP)
    assert metrics.accepted.labels("position", "http")._value.get() == 0


async def test_a_broker_that_never_answers_is_a_retry_within_the_publish_timeout() -> None:
    intake = TelemetryIntake(
        producer=FakeProducer(silent=True),
        directory=lambda: DIRECTORY,
        metrics=IngestMetrics(),
        rules=TelemetryRules(max_future_skew=timedelta(seconds=300)),
        clock=lambda: NOW,
        ack_timeout_s=0.05,
    )
    with pytest.raises(UnavailableError, match=r"within 0\.05 s; retry"):
        await asyncio.wait_for(intake.submit([Candidate(value=position())], source=Source.HTTP), timeout=5)


async def test_enqueue_hands_records_over_before_their_acknowledgement_is_awaited() -> None:
    producer = FakeProducer()
    submission = await intake_over(producer).enqueue([Candidate(value=position())], source=Source.KAFKA)
    assert len(producer.sent) == 1
    await submission.acknowledged
    assert submission.rejections == []


class OneBatch:
    """Every record lands in one open batch, as with the batch publisher: one future shared by all its senders."""

    def __init__(self) -> None:
        self.delivered: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def send(self, topic: str, value: bytes, key: bytes | None = None) -> asyncio.Future[None]:
        return self.delivered


async def test_one_sender_giving_up_does_not_cancel_the_batch_it_shares_with_others() -> None:
    """The raw consumer cancels its in-flight acknowledgements when it stops; an HTTP request whose pings share
    their batch must still hear the broker's answer (before, the batch's future was cancelled under it)."""
    producer = OneBatch()
    intake = TelemetryIntake(
        producer=producer, directory=lambda: DIRECTORY, metrics=IngestMetrics(), rules=TelemetryRules(),
        clock=lambda: NOW,
    )  # fmt: skip
    stopping = await intake.enqueue([Candidate(value=position())], source=Source.KAFKA)
    waiting = await intake.enqueue([Candidate(value=position(seq=2))], source=Source.HTTP)
    await asyncio.sleep(0)
    stopping.acknowledged.cancel()
    await asyncio.sleep(0)
    assert not producer.delivered.cancelled()
    producer.delivered.set_result(None)
    await asyncio.wait_for(waiting.acknowledged, timeout=5)


async def test_what_the_broker_acknowledges_after_its_sender_gave_up_is_still_counted() -> None:
    """A request that timed out was told to retry; its records may still land, and the counters say so."""
    producer = OneBatch()
    metrics = IngestMetrics()
    intake = TelemetryIntake(
        producer=producer, directory=lambda: DIRECTORY, metrics=metrics, rules=TelemetryRules(), clock=lambda: NOW,
        ack_timeout_s=0.01,
    )  # fmt: skip
    with pytest.raises(UnavailableError):
        await intake.submit([Candidate(value=position()), Candidate(value=position(unit_id="U9"))], source=Source.HTTP)
    assert metrics.accepted.labels("position", "http")._value.get() == 0
    producer.delivered.set_result(None)
    await asyncio.sleep(0.05)  # a few turns of the loop: the acknowledgement is a task waiting on the batch
    assert metrics.accepted.labels("position", "http")._value.get() == 1
    assert metrics.rejected.labels("unknown_unit", "http")._value.get() == 1


async def test_a_batch_failing_fails_the_submission_with_its_error_once_every_batch_is_settled() -> None:
    first: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    second: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    batches = iter([first, second])

    class TwoBatches:
        async def send(self, topic: str, value: bytes, key: bytes | None = None) -> asyncio.Future[None]:
            return next(batches)

    metrics = IngestMetrics()
    intake = TelemetryIntake(
        producer=TwoBatches(), directory=lambda: DIRECTORY, metrics=metrics, rules=TelemetryRules(),
        clock=lambda: NOW,
    )  # fmt: skip
    submission = await intake.enqueue(
        [Candidate(value=position()), Candidate(value=position(seq=2))], source=Source.KAFKA
    )
    first.set_exception(UnavailableError("not acknowledged; retry", field="kafka"))
    await asyncio.sleep(0)
    assert not submission.acknowledged.done()
    second.set_result(None)
    with pytest.raises(UnavailableError):
        await asyncio.wait_for(submission.acknowledged, timeout=5)
    assert metrics.accepted.labels("position", "kafka")._value.get() == 0


async def test_a_submission_cancelled_while_waiting_leaves_the_shared_batch_alone_and_is_still_counted() -> None:
    """A terminal or client hanging up cancels its submission; the batch it shares with others is not cancelled,
    and what the broker then acknowledges is counted."""
    producer = OneBatch()
    metrics = IngestMetrics()
    intake = TelemetryIntake(
        producer=producer, directory=lambda: DIRECTORY, metrics=metrics, rules=TelemetryRules(), clock=lambda: NOW
    )
    gone = asyncio.create_task(intake.submit([Candidate(value=position())], source=Source.JT808))
    staying = asyncio.create_task(intake.submit([Candidate(value=position(seq=2))], source=Source.JT808))
    await asyncio.sleep(0.01)
    gone.cancel()
    await asyncio.sleep(0.01)
    assert gone.cancelled()
    assert not producer.delivered.cancelled()
    producer.delivered.set_result(None)
    assert await asyncio.wait_for(staying, timeout=5) == []
    await asyncio.sleep(0.01)
    assert metrics.accepted.labels("position", "jt808")._value.get() == 2


async def test_a_location_its_writer_accepted_is_published_as_written_and_counted() -> None:
    """The gateway's plain locations: the intake's own writer accepted them (its registry, rules and clock), so
    the intake publishes the bytes as they are, keyed by unit, and counts them as accepted positions."""
    producer = FakeProducer()
    metrics = IngestMetrics()
    intake = intake_over(producer, metrics)
    local = (NOW - timedelta(seconds=2)).astimezone(jt808.GMT8)
    location = jt808.Location(0, jt808.POSITIONED, 27.24, 111.47, 60, 42.5, 90, local.replace(tzinfo=None), {})
    written = intake.position_writer(Source.JT808).write(jt808.encode_location(location), "U1", 480)
    assert written is not None
    rejections = await intake.submit(
        [Candidate(value=written, key=b"U1", written=True), Candidate(value=position(unit_id="U-unknown"))],
        source=Source.JT808,
    )
    assert [r.reason for r in rejections] == [RejectReason.UNKNOWN_UNIT]
    [(value, key)] = producer.on(POSITIONS.name)
    assert (value, key) == (written, b"U1")
    record = POSITIONS.decode(value)
    assert isinstance(record, PositionRecord)
    assert (record.platform_id, record.source, record.received_at) == ("P1", Source.JT808, NOW)
    assert metrics.accepted.labels("position", "jt808")._value.get() == 1
