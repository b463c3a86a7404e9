import base64
from datetime import UTC, datetime

from shared.contract.deadletter import DEADLETTER_PAYLOAD_LIMIT, dead_letter
from shared.contract.schemas import RejectReason, Source
from shared.errors import RejectedError

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
