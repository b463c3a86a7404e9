"""Response-time maths against hand-worked examples (contract section 6)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.analytics.domain.latency import UNASSIGNED, Event, call_facts, figures
from shared.contract.schemas import CallEventKind
from shared.percentiles import percentile

T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
CREATED, ASSIGNED, ON_SCENE, CLOSED = (
    CallEventKind.CREATED,
    CallEventKind.ASSIGNED,
    CallEventKind.ON_SCENE,
    CallEventKind.CLOSED,
)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_percentiles_interpolate_linearly_between_closest_ranks() -> None:
    values = [40.0, 10.0, 30.0, 20.0]
    assert percentile(values, 0.5) == 25.0  # rank 1.5: halfway between 20 and 30
    assert percentile(values, 0.9) == pytest.approx(37.0)  # rank 2.7: 30 + 0.7 * 10
    assert percentile(values, 1.0) == 40.0
    assert percentile([7.0], 0.9) == 7.0
    assert percentile([], 0.5) is None


@given(st.lists(st.floats(min_value=0, max_value=1e5), min_size=1, max_size=50), st.floats(min_value=0, max_value=1))
def test_a_percentile_lies_between_the_smallest_and_largest_value(values: list[float], fraction: float) -> None:
    result = percentile(values, fraction)
    assert result is not None
    assert min(values) - 1e-9 <= result <= max(values) + 1e-9


def test_a_call_reached_by_a_unit_of_another_platform_counts_under_that_platform() -> None:
    facts = call_facts(
        "C1",
        [
            Event(CREATED, at(0)),
            Event(ASSIGNED, at(20), "U-a", "P-east"),
            Event(ASSIGNED, at(30), "U-b", "P-west"),
            Event(ON_SCENE, at(150), "U-b", "P-west"),
            Event(ON_SCENE, at(170), "U-a", "P-east"),
        ],
        target_s=180,
        zone_class="central_urban",
    )
    assert facts.platform_id == "P-west"
    assert (facts.dispatch_s, facts.travel_s, facts.response_s) == (20.0, 130.0, 150.0)
    assert facts.target_met is True


def test_a_call_never_reached_counts_under_its_first_assigned_platform_and_apart_from_latency() -> None:
    reached = call_facts(
        "C1",
        [Event(CREATED, at(0)), Event(ASSIGNED, at(10), "U", "P"), Event(ON_SCENE, at(70), "U", "P")],
        target_s=60,
        zone_class="key_area",
    )
    missed = call_facts(
        "C2", [Event(CREATED, at(5)), Event(ASSIGNED, at(25), "U", "P")], target_s=60, zone_class="key_area"
    )
    never_assigned = call_facts("C3", [Event(CREATED, at(9))], target_s=60, zone_class="key_area")
    assert missed.platform_id == "P"
    assert never_assigned.platform_id == UNASSIGNED
    group = figures("P", [reached, missed])
    assert (group.calls, group.not_arrived) == (2, 1)
    assert group.response_s.p50 == 70.0
    assert group.dispatch_s.mean == 10.0  # only the arrived call's dispatch counts
    assert group.target_met_pct == 0.0  # 70 s against a 60 s target


def test_a_gps_arrival_earlier_than_the_reported_one_is_the_arrival() -> None:
    facts = call_facts(
        "C1",
        [
            Event(CREATED, at(0)),
            Event(ASSIGNED, at(15), "U", "P"),
            Event(ON_SCENE, at(130), "U", "P"),  # the console reported it late
            Event(ON_SCENE, at(95), "U", "P"),  # GPS saw it first
        ],
        target_s=180,
        zone_class="central_urban",
    )
    assert facts.arrived_at == at(95)
    assert facts.response_s == 95.0


def test_events_out_of_order_and_repeated_give_the_same_facts() -> None:
    events = [
        Event(CREATED, at(0)),
        Event(ASSIGNED, at(12), "U", "P"),
        Event(ON_SCENE, at(200), "U", "P"),
        Event(CLOSED, at(1800), "U", "P"),
    ]
    shuffled = [events[3], events[1], events[0], events[2], events[1], events[3]]
    a = call_facts("C", events, target_s=300, zone_class="other_urban")
    b = call_facts("C", shuffled, target_s=300, zone_class="other_urban")
    assert a == b
    assert a.handling_s == 1800.0


def test_group_figures_by_hand() -> None:
    calls = [
        call_facts(
            f"C{i}",
            [Event(CREATED, at(0)), Event(ASSIGNED, at(d), "U", "P"), Event(ON_SCENE, at(d + t), "U", "P")],
            target_s=180,
            zone_class="central_urban",
        )
        for i, (d, t) in enumerate([(10, 50), (20, 100), (30, 200)])
    ]
    group = figures("P", calls)
    # responses 60, 120, 230: mean 136.67, p50 120, p90 rank 1.8 -> 120 + 0.8 * 110 = 208, max 230
    assert group.response_s.mean == pytest.approx(410 / 3)
    assert (group.response_s.p50, group.response_s.max) == (120.0, 230.0)
    assert group.response_s.p90 == pytest.approx(208.0)
    assert group.travel_s.p50 == 100.0
    assert group.target_met_pct == pytest.approx(200 / 3)
