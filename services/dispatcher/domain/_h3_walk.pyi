"""The nearest search's inner loops in C (`_h3_walk.c`); `terms` is h3_index's `_Terms`."""

from array import array
from typing import Any

def scan(bucket: Any, terms: tuple[Any, ...], /) -> None: ...
def walk_ring(
    cells: tuple[int, ...],
    geometry: array[float],
    layers: list[dict[int, Any]],
    every_cell_beyond: bool,
    terms: tuple[Any, ...],
    /,
) -> bool: ...
