"""Coverage of the promise as analytics reports it: each class's mean share of area covered, hour by hour."""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple


class CoverageHour(NamedTuple):
    hour: datetime
    zone_class: str
    target_s: int
    share: float
    """Mean over the hour's samples of the share of the class's cells an available unit reached within target_s."""
