from datetime import UTC, datetime, timedelta

from services.analytics.dashboard import COVERAGE_HOURS, P50_COLOUR, Today, render_dashboard
from services.analytics.domain.coverage import CoverageHour
from services.analytics.domain.latency import GroupFigures
from shared.percentiles import Spread

NOW = datetime(2026, 11, 23, 20, 0, tzinfo=UTC)


def group(key: str, p50: float | None, p90: float | None, met: float | None = None) -> GroupFigures:
    spread = Spread(p50, p50, p90, p90)
    return GroupFigures(key, 10, 0 if p50 else 10, spread, spread, spread, met)


def test_the_page_draws_a_bar_per_platform_with_its_figures_and_refreshes_itself() -> None:
    html = render_dashboard(
        by_platform=[group("SY-05", 120.0, 240.0), group("SY-06", None, None)],
        by_zone=[group("key_area", 50.0, 70.0, met=75.0)],
        today=Today(calls=12, arrived=10, not_arrived=2, target_met_pct=80.0),
        generated_at=NOW,
        refresh_s=30,
    )
    assert html.count(f'fill="{P50_COLOUR}"') == 1
    assert "p50 120 s · p90 240 s" in html
    assert "no arrivals" in html
    assert "75.0% within 60 s" in html
    assert '<meta http-equiv="refresh" content="30">' in html
    assert "<b>12</b>calls" in html


def test_platform_names_are_escaped() -> None:
    html = render_dashboard(
        by_platform=[group("<script>alert(1)</script>", 60.0, 90.0)],
        by_zone=[],
        today=Today(0, 0, 0, None),
        generated_at=NOW,
        refresh_s=30,
    )
    assert "<script>" not in html
    assert "&lt;script&gt;" in html


def test_platforms_are_shown_by_name_with_the_id_on_hover() -> None:
    html = render_dashboard(
        by_platform=[group("SY-05", 60.0, 90.0), group("SY-99", 60.0, 90.0)],
        by_zone=[],
        today=Today(0, 0, 0, None),
        generated_at=NOW,
        refresh_s=30,
        platform_names={"SY-05": "邵阳快警平台 5"},
    )
    assert "<title>SY-05</title>邵阳快警平台 5</text>" in html
    assert "<title>SY-99</title>SY-99</text>" in html, "a platform the registry does not name keeps its id"


def test_coverage_is_a_row_per_class_across_the_last_twelve_hours_coloured_by_share() -> None:
    hours = [
        CoverageHour(NOW - timedelta(hours=h), zone, target, share)
        for h in range(14)
        for zone, target, share in (("key_area", 60, 0.25), ("central_urban", 180, 0.85 if h else 0.6))
    ]
    html = render_dashboard(
        by_platform=[], by_zone=[], today=Today(0, 0, 0, None), generated_at=NOW, refresh_s=30, coverage=hours
    )
    table = html[html.index('<table id="coverage">') :]
    assert table.count("<th>") == 1 + COVERAGE_HOURS + 2, "a corner, the hours, a heading per class"
    assert "<th>09:00</th>" in table, "the oldest of the twelve hours shown"
    assert "<th>08:00</th>" not in table
    assert table.index('data-zone-class="key_area"') < table.index('data-zone-class="central_urban"')
    assert table.count('style="background:#fed7d7">25%') == COVERAGE_HOURS, "key areas: red at a quarter"
    assert table.count('style="background:#c6f6d5">85%') == COVERAGE_HOURS - 1
    assert 'style="background:#fefcbf">60%' in table, "the newest hour of the centre: amber"
    empty = render_dashboard(by_platform=[], by_zone=[], today=Today(0, 0, 0, None), generated_at=NOW, refresh_s=30)
    assert "no coverage samples in the last 24 hours" in empty
