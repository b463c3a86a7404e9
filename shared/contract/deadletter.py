"""Dead letters: what was rejected, why, and the original bytes, for every service that rejects input."""

from __future__ import annotations

import base64
from datetime import datetime

from shared.contract.schemas import DeadLetter, Source
from shared.errors import RejectedError

DEADLETTER_PAYLOAD_LIMIT = 256 * 1024
"""Dead letters keep at most this much of the original payload, well under Kafka's 1 MiB record limit."""


def dead_letter(
    payload: bytes, rejected: RejectedError, *, source: Source, now: datetime, origin: str | None = None
) -> DeadLetter:
    """The one translation of an error into a dead letter: its reason and message, with the original payload (text
    when it is UTF-8, base64 otherwise; truncated past `DEADLETTER_PAYLOAD_LIMIT`)."""
    truncated = len(payload) > DEADLETTER_PAYLOAD_LIMIT
    kept = payload[:DEADLETTER_PAYLOAD_LIMIT]
    try:
        text, encoding = kept.decode("utf-8"), None
    except UnicodeDecodeError:
        text, encoding = base64.b64encode(kept).decode("ascii"), "base64"
    return DeadLetter(
        error=str(rejected),
        reason=rejected.reason.value,
        source=source,
        received_at=now,
        payload=text,
        payload_encoding=encoding,
        payload_truncated=truncated,
        origin=origin,
    )
