"""The one JSON codec for Kafka values: orjson, UTC timestamps with `Z`, no NaN."""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import BaseModel

_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC


def encode(model: BaseModel) -> bytes:
    return orjson.dumps(model.model_dump(mode="python"), option=_OPTIONS)


def encode_obj(obj: Any) -> bytes:
    return orjson.dumps(obj, option=_OPTIONS)


def decode(data: bytes | str) -> Any:
    """Raises `orjson.JSONDecodeError` (a `ValueError`) on anything that is not JSON."""
    return orjson.loads(data)
