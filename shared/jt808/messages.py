"""JT/T 808 message ids and result codes, and the one error every malformed input raises."""

from __future__ import annotations

from datetime import timedelta, timezone
from enum import IntEnum

from shared.contract.schemas import RejectReason
from shared.errors import RejectedError

GMT8 = timezone(timedelta(hours=8))


class Jt808Error(RejectedError):
    """A frame or body that cannot be decoded; the message says what is wrong."""

    def __init__(self, error: str) -> None:
        super().__init__(RejectReason.INVALID_FRAME, error)


class MessageId(IntEnum):
    TERMINAL_RESPONSE = 0x0001
    HEARTBEAT = 0x0002
    LOGOUT = 0x0003
    REGISTER = 0x0100
    AUTHENTICATE = 0x0102
    LOCATION = 0x0200
    BATCH_LOCATION = 0x0704
    AV_ATTRIBUTES = 0x1003
    RESOURCE_LIST = 0x1205
    PLATFORM_RESPONSE = 0x8001
    REGISTER_RESPONSE = 0x8100
    TRANSMISSION_STATUS = 0x9105


class Result(IntEnum):
    """0x8001 / 0x0001 result codes (S2013 tables 4, 5)."""

    SUCCESS = 0
    FAILURE = 1
    MESSAGE_ERROR = 2
    NOT_SUPPORTED = 3


class RegisterResult(IntEnum):
    """0x8100 result codes (S2013 table 8)."""

    SUCCESS = 0
    VEHICLE_REGISTERED = 1
    VEHICLE_UNKNOWN = 2
    TERMINAL_REGISTERED = 3
    TERMINAL_UNKNOWN = 4
