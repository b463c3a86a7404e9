"""ETA learned from the fleet's own drives to calls: speed profiles per H3 cell, hour of the week and unit kind.

What a profile measures is the speed made good towards the call: between two consecutive fixes of a unit driving
to a call, how much closer (great-circle) it came to the call, over the time it took. A road speed would need a
guessed circuity to become an ETA; the speed made good already holds the detours (a river crossed only at a bridge,
one-way streets, a jam), so an ETA is the great-circle distance over it and nothing else is guessed.

A rate for a query is the mean seconds per metre at three points on the straight line from the unit to the call (a
sixth of the way, half-way, five sixths), each from the most specific profile with enough driving observed in it:
(cell, hour of week, kind), then (cell, kind), then (parent cell, kind), then the configured model alone. A profile
is shrunk towards the configured model, which counts as `prior_metres` of driving made good at its own rate: a cell
seen on a few drives moves the estimate a little, a cell seen on hundreds decides it (raw per-cell ratios from one
demo night were far worse than the configured model; the README has the backtests). Hours of the week are UTC
hours: buckets only need to be the same hour every week, and a city's UTC offset is fixed.

Exactness of the search is kept because the least rate of the profiles (and of the configured model) is known.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import h3.api.basic_int as h3i

from services.dispatcher.domain.eta import CircuityEta, EtaQuery, LatLon
from shared.contract.registry import UnitKind
from shared.geo import great_circle_m


def hour_of_week(at: datetime) -> int:
    utc = at.astimezone(UTC)
    return utc.weekday() * 24 + utc.hour


@dataclass(frozen=True, slots=True)
class Fix:
    ts: datetime
    lat: float
    lon: float


@dataclass(frozen=True, slots=True)
class Trip:
    """A unit's drive to a call: its fixes from the dispatch on, and when it was on scene."""

    call_id: str
    unit_id: str
    kind: UnitKind
    destination: LatLon
    fixes: Sequence[Fix]
    """By time; the first is where the unit was when it set off."""
    arrived_at: datetime

    @property
    def origin(self) -> LatLon:
        return self.fixes[0].lat, self.fixes[0].lon

    @property
    def travel_s(self) -> float:
        return (self.arrived_at - self.fixes[0].ts).total_seconds()

    @property
    def distance_m(self) -> float:
        return great_circle_m(*self.origin, *self.destination)


@dataclass(frozen=True)
class ProfileRules:
    resolution: int = 8
    """H3 resolution of the profiles' cells (8: about 0.7 km², a few city blocks)."""
    min_observed_s: float = 60.0
    """A profile is used only when this much driving was seen in it; thinner ones fall back to a coarser one."""
    max_gap_s: float = 120.0
    """Consecutive fixes further apart say nothing about the way between them."""
    floor_kmh: float = 3.0
    ceiling_kmh: float = 150.0
    """Speeds made good are held within these: a cell where units drove away from their calls is slow, not
    negative, and a glitch never makes a cell faster than any car."""
    prior_metres: float = 1000.0
    """How much driving the configured model's rate counts for in every profile."""


@dataclass(slots=True)
class _Tally:
    metres: float = 0.0
    seconds: float = 0.0


_Key = tuple[int, int, UnitKind] | tuple[int, UnitKind]


@dataclass(frozen=True)
class SpeedProfiles:
    rules: ProfileRules
    built_at: datetime
    trips: int
    cells: int
    """Cells with a profile of their own."""
    tallies: dict[_Key, tuple[float, float]] = field(repr=False)
    """(seconds, metres made good) by (cell, hour of week, kind), (cell, kind) and (parent cell, kind)."""
    least: float = field(init=False, repr=False)
    """No profile's rate is lower, whatever it is shrunk towards."""

    def __post_init__(self) -> None:
        rates = (self._clamped(seconds / metres) for seconds, metres in self.tallies.values() if metres > 0)
        object.__setattr__(self, "least", min(rates, default=float("inf")))

    def _clamped(self, rate: float) -> float:
        return min(3.6 / self.rules.floor_kmh, max(3.6 / self.rules.ceiling_kmh, rate))

    @classmethod
    def build(cls, trips: Iterable[Trip], *, built_at: datetime, rules: ProfileRules | None = None) -> SpeedProfiles:
        rules = rules or ProfileRules()
        tallies: dict[_Key, _Tally] = defaultdict(_Tally)
        count = 0
        for trip in trips:
            count += 1
            goal = trip.destination
            for before, after in zip(trip.fixes, trip.fixes[1:], strict=False):
                seconds = (after.ts - before.ts).total_seconds()
                if not 0 < seconds <= rules.max_gap_s:
                    continue
                made_good = great_circle_m(before.lat, before.lon, *goal) - great_circle_m(after.lat, after.lon, *goal)
                cell = h3i.latlng_to_cell(before.lat, before.lon, rules.resolution)
                parent = h3i.cell_to_parent(cell, rules.resolution - 1)
                for key in ((cell, hour_of_week(before.ts), trip.kind), (cell, trip.kind), (parent, trip.kind)):
                    tally = tallies[key]
                    tally.metres += made_good
                    tally.seconds += seconds
        kept = {key: (t.seconds, t.metres) for key, t in tallies.items() if t.seconds >= rules.min_observed_s}
        cells = len({key[0] for key in kept if h3i.get_resolution(key[0]) == rules.resolution})
        return cls(rules, built_at, count, cells, kept)

    def rate(self, kind: UnitKind, point: LatLon, how: int, prior: float) -> float:
        """Seconds per metre at `point`: the most specific profile there shrunk towards `prior`, or `prior`."""
        cell = h3i.latlng_to_cell(point[0], point[1], self.rules.resolution)
        tally = (
            self.tallies.get((cell, how, kind))
            or self.tallies.get((cell, kind))
            or self.tallies.get((h3i.cell_to_parent(cell, self.rules.resolution - 1), kind))
        )
        if tally is None:
            return prior
        seconds, metres = tally
        weight, made_good = self.rules.prior_metres, max(metres, 0.0) + self.rules.prior_metres
        return self._clamped((seconds + weight * prior) / made_good) if made_good > 0 else self._clamped(math.inf)


_SAMPLES = (1 / 6, 1 / 2, 5 / 6)


@dataclass(frozen=True)
class LearnedEta:
    """Speed profiles, falling back to the configured model where they have seen too little."""

    profiles: SpeedProfiles
    fallback: CircuityEta

    def seconds_per_metre(self, kind: UnitKind, origin: LatLon, query: EtaQuery) -> float:
        how = hour_of_week(query.at)
        (lat0, lon0), (lat1, lon1) = origin, query.destination
        total = 0.0
        prior = self.fallback.rate(kind, query.zone_class)
        for share in _SAMPLES:
            point = (lat0 + (lat1 - lat0) * share, lon0 + (lon1 - lon0) * share)
            total += self.profiles.rate(kind, point, how, prior)
        return total / len(_SAMPLES)

    def least_seconds_per_metre(self, query: EtaQuery) -> float:
        return min(self.profiles.least, self.fallback.least_seconds_per_metre(query))

    def rates_by_kind(self, query: EtaQuery) -> Mapping[UnitKind, float] | None:
        """Before any drive has been learned every rate is the configured model's: its per-kind fast path holds."""
        return None if self.profiles.tallies else self.fallback.rates_by_kind(query)
