"""How well an ETA model would have predicted the drives the fleet really made.

Completed drives are split by time: the learned model is built from the earlier ones only and both models predict
the later ones, so the learned model is never judged on drives it has seen. With a shuffle seed the split is random
instead, so both halves hold the same hours (what a long history gives the learned model, and one night does not).
An error is predicted minus actual travel time (seconds from the unit's fix at dispatch to its arrival on scene):
positive is a late estimate.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from services.dispatcher.domain.eta import CircuityEta, EtaModel, EtaQuery, LatLon, eta_s
from services.dispatcher.domain.speed_profiles import LearnedEta, ProfileRules, SpeedProfiles, Trip
from shared.contract.registry import ZoneClass
from shared.errors import KuaijingError
from shared.percentiles import percentile


@dataclass(frozen=True, slots=True)
class ModelErrors:
    model: str
    trips: int
    median_abs_s: float
    p90_abs_s: float
    median_s: float
    """The median signed error: the model's bias."""


@dataclass(frozen=True, slots=True)
class Backtest:
    trained_on: int
    tested_on: int
    left_out: int
    """Drives with fewer than two fixes, or none of their time on the road: nothing to learn or judge."""
    split_at: datetime
    cells: int
    models: tuple[ModelErrors, ...]


def errors_of(
    name: str, model: EtaModel, trips: Sequence[Trip], zone_class_of: Callable[[LatLon], ZoneClass]
) -> ModelErrors:
    signed = []
    for trip in trips:
        query = EtaQuery(trip.destination, trip.fixes[0].ts, zone_class_of(trip.destination))
        signed.append(eta_s(model, trip.kind, trip.origin, query, trip.distance_m) - trip.travel_s)
    absolute = [abs(e) for e in signed]
    return ModelErrors(
        name,
        len(trips),
        percentile(absolute, 0.5) or 0.0,
        percentile(absolute, 0.9) or 0.0,
        percentile(signed, 0.5) or 0.0,
    )


def backtest(
    trips: Sequence[Trip],
    *,
    configured: CircuityEta,
    zone_class_of: Callable[[LatLon], ZoneClass],
    test_share: float = 0.3,
    shuffle_seed: int | None = None,
    rules: ProfileRules | None = None,
) -> Backtest:
    usable = sorted((t for t in trips if len(t.fixes) >= 2 and t.travel_s > 0), key=lambda t: t.fixes[0].ts)
    if shuffle_seed is not None:
        random.Random(shuffle_seed).shuffle(usable)
    tested = round(len(usable) * test_share)
    if tested < 1 or tested == len(usable):
        raise KuaijingError(
            f"{len(usable)} completed drives with fixes: too few to learn from some and test on the rest "
            f"(test share {test_share})"
        )
    train, test = usable[:-tested], usable[-tested:]
    split_at = min(t.fixes[0].ts for t in test)
    profiles = SpeedProfiles.build(train, built_at=split_at, rules=rules)
    learned = LearnedEta(profiles, configured)
    models = (
        errors_of("configured", configured, test, zone_class_of),
        errors_of("learned", learned, test, zone_class_of),
    )
    return Backtest(len(train), len(test), len(trips) - len(usable), split_at, profiles.cells, models)
