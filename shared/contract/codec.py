"""The one JSON codec for Kafka values: orjson, UTC timestamps with `Z`, no NaN."""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import BaseModel

_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC


def encode(model: BaseModel) -> bytes:
    """Serialise a flat message model straight from its field values.

    Message models are flat (str enums, aware datetimes, numbers, strings), which orjson writes natively; going
    through `model_dump` first costs five times as much on the ingest hot path.
    """
    return orjson.dumps(model.__dict__, option=_OPTIONS)


def encode_obj(obj: Any) -> bytes:
    return orjson.dumps(obj, option=_OPTIONS)


def decode(data: bytes | str) -> Any:
    """Raises `orjson.JSONDecodeError` (a `ValueError`) on anything that is not JSON."""
    return orjson.loads(data)
