"""JT/T 808 (2011, 2013, 2019 headers) and the JT/T 1078 signalling bodies: framing, decoding, encoding.

Pure functions over bytes, no I/O and no asyncio, so the gateway, the raw-topic consumer and the tests share them.
Every malformed input raises `Jt808Error` and nothing else. Layouts follow the brief's `jt808.md` (which cites the
standards' tables); the quirks of real terminals it lists are handled here: an additional item's own length byte
is trusted over the table, a 2019-flagged header of 2013 size is accepted when only that length adds up, altitude is
read as signed, and the terminal clock's zone is the caller's (GMT+8 unless the terminal is configured otherwise).
The hot path (a well-formed frame, a plain 0x0200 body to its positions record) is also compiled (`_decoder.c`); what it
declines comes back to the Python functions, which are the reference.
"""

from shared.jt808._decoder import position_record as compiled_position_record
from shared.jt808._decoder import position_value as compiled_position_value
from shared.jt808.bodies import (
    ACC_ON,
    BEIDOU_USED,
    GALILEO_USED,
    GLONASS_USED,
    GPS_USED,
    POSITIONED,
    SOUTH,
    WEST,
    Authentication,
    AvAttributes,
    Batch,
    GeneralResponse,
    Location,
    Registration,
    Resource,
    ResourceList,
    TransmissionStatus,
    bcd_time,
    decode_authentication,
    decode_av_attributes,
    decode_batch,
    decode_general_response,
    decode_location,
    decode_registration,
    decode_resource_list,
    decode_transmission_status,
    encode_general_response,
    encode_general_response_frame,
    encode_register_response,
    reference_general_response_frame,
)
from shared.jt808.framing import (
    ESCAPE,
    FLAG,
    MAX_BODY,
    MAX_FRAME,
    FrameSplitter,
    checksum,
    escape,
    unescape,
)
from shared.jt808.header import (
    Frame,
    Header,
    Reassembler,
    bcd_digits,
    encode_frame,
    encode_frames,
    parse_frame,
)
from shared.jt808.messages import GMT8, Jt808Error, MessageId, RegisterResult, Result
from shared.jt808.pings import gnss_of, position_ping, video_pings
from shared.jt808.terminal import (
    encode_authentication,
    encode_batch,
    encode_location,
    encode_registration,
)

__all__ = [
    "ACC_ON",
    "BEIDOU_USED",
    "ESCAPE",
    "FLAG",
    "GALILEO_USED",
    "GLONASS_USED",
    "GMT8",
    "GPS_USED",
    "MAX_BODY",
    "MAX_FRAME",
    "POSITIONED",
    "SOUTH",
    "WEST",
    "Authentication",
    "AvAttributes",
    "Batch",
    "Frame",
    "FrameSplitter",
    "GeneralResponse",
    "Header",
    "Jt808Error",
    "Location",
    "MessageId",
    "Reassembler",
    "RegisterResult",
    "Registration",
    "Resource",
    "ResourceList",
    "Result",
    "TransmissionStatus",
    "bcd_digits",
    "bcd_time",
    "checksum",
    "compiled_position_record",
    "compiled_position_value",
    "decode_authentication",
    "decode_av_attributes",
    "decode_batch",
    "decode_general_response",
    "decode_location",
    "decode_registration",
    "decode_resource_list",
    "decode_transmission_status",
    "encode_authentication",
    "encode_batch",
    "encode_frame",
    "encode_frames",
    "encode_general_response",
    "encode_general_response_frame",
    "encode_location",
    "encode_register_response",
    "encode_registration",
    "escape",
    "gnss_of",
    "parse_frame",
    "position_ping",
    "reference_general_response_frame",
    "unescape",
    "video_pings",
]
