import base64
from datetime import UTC, datetime

from shared.contract.deadletter import DEADLETTER_PAYLOAD_LIMIT, dead_letter
from shared.contract.schemas import Source

NOW = datetime(2026, 11, 23, tzinfo=UTC)


def test_text_payloads_are_kept_as_text() -> None:
    letter = dead_letter(b'{"kind": 1}', error="kind: bad", reason="unknown_kind", source=Source.HTTP, now=NOW)
    assert letter.payload == '{"kind": 1}'
    assert letter.payload_encoding is None
    assert letter.v == 1


def test_binary_payloads_are_base64() -> None:
    frame = bytes.fromhex("7e0002000004304832546500b7ca7e")
    letter = dead_letter(frame, error="x", reason="unsupported_format", source=Source.KAFKA, now=NOW)
    assert letter.payload_encoding == "base64"
    assert base64.b64decode(letter.payload) == frame


def test_huge_payloads_are_truncated_and_say_so() -> None:
    letter = dead_letter(
        b"x" * (DEADLETTER_PAYLOAD_LIMIT + 10), error="x", reason="invalid_json", source=Source.HTTP, now=NOW
    )
    assert letter.payload_truncated
    assert len(letter.payload) == DEADLETTER_PAYLOAD_LIMIT
