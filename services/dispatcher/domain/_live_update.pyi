"""The live map's position update in C (`_live_update.c`)."""

from typing import Any

def place(unit: Any, position: Any, /) -> int: ...
