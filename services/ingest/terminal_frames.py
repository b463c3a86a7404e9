"""What a JT/T 808 frame contributes to the intake: the contract's pings, or dead letters saying why not.

Shared by the TCP gateway and the raw-topic consumer, so a frame means the same whichever way it arrived.
"""

from __future__ import annotations

from datetime import timedelta, timezone

from services.ingest.domain.telemetry import PositionWriter
from services.ingest.intake import Candidate
from shared import jt808
from shared.contract.registry import UnitRef
from shared.contract.schemas import RejectReason
from shared.errors import RejectedError
from shared.jt808 import Frame, Jt808Error, MessageId

LOCATION_MESSAGES = frozenset({MessageId.LOCATION, MessageId.BATCH_LOCATION})


def clock_of(unit: UnitRef) -> timezone:
    return timezone(timedelta(minutes=unit.terminal_utc_offset_min))


def rejected(
    wire: bytes, reason: RejectReason, error: str, *, key: bytes = b"", origin: str | None = None
) -> Candidate:
    return Candidate(value=RejectedError(reason, error), payload=wire, key=key, origin=origin)


def location_candidates(
    frame: Frame, wire: bytes, *, unit: UnitRef, origin: str | None = None, writer: PositionWriter | None = None
) -> list[Candidate]:
    """Every location of a 0x0200 or 0x0704 frame as a candidate ping (blind-area re-uploads are late pings,
    which the intake stores without moving the live position); JT/T 1078 alarm items add video pings. With a
    `writer` (the intake's), a plain location is accepted and written to its topic's bytes in one compiled step."""
    key = unit.unit_id.encode()
    if frame.header.message_id == MessageId.LOCATION:
        if writer is not None:
            value = writer.write(frame.body, unit.unit_id, unit.terminal_utc_offset_min)
            if value is not None:
                return [Candidate(value=value, payload=wire, key=key, origin=origin, written=True)]
        record = jt808.compiled_position_record(frame.body, unit.unit_id, unit.terminal_utc_offset_min)
        if record is not None:  # the common report, decoded in one compiled step; any other takes the path below
            return [Candidate(value=record, payload=wire, key=key, origin=origin, decoded=True)]
    try:
        if frame.header.message_id == MessageId.BATCH_LOCATION:
            locations = jt808.decode_batch(frame.body).locations
        else:
            locations = [jt808.decode_location(frame.body)]
    except Jt808Error as e:
        return [rejected(wire, RejectReason.INVALID_FRAME, f"jt808: {e}", key=key, origin=origin)]
    clock = clock_of(unit)
    candidates = []
    for location in locations:
        try:
            ping = jt808.position_ping(location, unit_id=unit.unit_id, clock=clock)
        except Jt808Error as e:
            candidates.append(rejected(wire, RejectReason.OUT_OF_RANGE, f"jt808: {e}", key=key, origin=origin))
            continue
        candidates.append(Candidate(value=ping, payload=wire, key=key, origin=origin))
        candidates += [
            Candidate(value=video, payload=wire, key=key, origin=origin)
            for video in jt808.video_pings(location, unit_id=unit.unit_id, clock=clock)
        ]
    return candidates
