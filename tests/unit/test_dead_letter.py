import asyncio
import base64
import logging
from dataclasses import dataclass as plain
from datetime import UTC, datetime

import pytest

from shared.contract.deadletter import DEADLETTER_PAYLOAD_LIMIT, dead_letter
from shared.contract.schemas import PositionRecord, RejectReason, Source
from shared.contract.topics import DEADLETTER, POSITIONS
from shared.errors import RejectedError
from shared.geo import h3_cell

NOW = datetime(2026, 11, 23, tzinfo=UTC)


def test_text_payloads_are_kept_as_text_with_the_error_s_reason() -> None:
    rejected = RejectedError(RejectReason.UNKNOWN_KIND, "bad", field="kind")
    letter = dead_letter(b'{"kind": 1}', rejected, source=Source.HTTP, now=NOW)
    assert letter.payload == '{"kind": 1}'
    assert (letter.reason, letter.error) == ("unknown_kind", "kind: bad")
    assert letter.payload_encoding is None
    assert letter.v == 1


def test_binary_payloads_are_base64() -> None:
    frame = bytes.fromhex("7e0002000004304832546500b7ca7e")
    letter = dead_letter(frame, RejectedError(RejectReason.UNSUPPORTED_FORMAT, "x"), source=Source.KAFKA, now=NOW)
    assert letter.payload_encoding == "base64"
    assert base64.b64decode(letter.payload) == frame


def test_huge_payloads_are_truncated_and_say_so() -> None:
    letter = dead_letter(
        b"x" * (DEADLETTER_PAYLOAD_LIMIT + 10),
        RejectedError(RejectReason.INVALID_JSON, "x"),
        source=Source.HTTP,
        now=NOW,
    )
    assert letter.payload_truncated
    assert len(letter.payload) == DEADLETTER_PAYLOAD_LIMIT


@plain(frozen=True)
class Consumed:
    """A consumed Kafka record, as much of it as decoding reads."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


async def test_a_run_of_undecodable_records_is_dead_lettered_together_and_acknowledged_once() -> None:
    """All letters are handed to the producer before any acknowledgement is awaited (before: one round trip
    each, and 50,000 foreign records kept the dispatcher from ready for over a minute); good records come back in
    order with their values."""

    class Broker:
        def __init__(self) -> None:
            self.letters: list[tuple[str, bytes, asyncio.Future[None]]] = []

        async def send(self, topic: str, value: bytes, key: bytes | None = None) -> asyncio.Future[None]:
            acknowledged: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self.letters.append((topic, value, acknowledged))
            return acknowledged

    now = datetime.now(UTC)
    good = POSITIONS.encode(
        PositionRecord(unit_id="U-1", ts=now, lat=27.2, lon=111.4, platform_id="P-1", h3=h3_cell(27.2, 111.4),
                       source=Source.HTTP, received_at=now)
    )  # fmt: skip
    records = [Consumed(POSITIONS.name, 3, n, b"U-1", good if n % 50 == 0 else b"{junk") for n in range(500)]
    broker = Broker()
    decoding = asyncio.create_task(POSITIONS.decode_all(records, broker))
    for _ in range(5):
        await asyncio.sleep(0)
    assert len(broker.letters) == 490, "every letter handed over before the first acknowledgement"
    assert not decoding.done()
    for _, _, acknowledged in broker.letters:
        acknowledged.set_result(None)
    decoded = await decoding
    assert [r.offset for r, _ in decoded] == list(range(0, 500, 50))
    assert {topic for topic, _, _ in broker.letters} == {DEADLETTER.name}
    assert DEADLETTER.decode(broker.letters[0][1]).origin == f"{POSITIONS.name}/3/1"


async def test_a_reader_that_does_not_own_a_topic_s_dead_letters_skips_what_it_cannot_decode(
    caplog: pytest.LogCaptureFixture,
) -> None:
    good = POSITIONS.encode(
        PositionRecord(unit_id="U-1", ts=datetime(2026, 11, 30, tzinfo=UTC), lat=27.2, lon=111.4, platform_id="P",
                       h3=h3_cell(27.2, 111.4), source=Source.HTTP, received_at=datetime(2026, 11, 30, tzinfo=UTC))
    )  # fmt: skip
    records = [Consumed(POSITIONS.name, 0, n, b"U-1", good if n % 2 else b"{junk") for n in range(6)]
    with caplog.at_level(logging.WARNING):
        decoded = await POSITIONS.decode_all(records, None)
    assert [r.offset for r, _ in decoded] == [1, 3, 5]
    assert "skipped 3 undecodable record(s) of kuaijing.positions" in caplog.text
    assert "ingest's history writer" in caplog.text
