"""The nearest search's inner loop in C (`_bucket_scan.c`)."""

from array import array
from collections.abc import Callable
from typing import Any

def scan(
    coords: array[float],
    entries: list[Any],
    qx: float,
    qy: float,
    qz: float,
    since: float,
    heap: list[tuple[float, int, float, Any]],
    k: int,
    accept: Callable[[Any], bool] | None,
    epsilon_cos: float,
    /,
) -> None: ...
