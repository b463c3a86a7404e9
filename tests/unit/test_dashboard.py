from datetime import UTC, datetime

from services.analytics.dashboard import P50_COLOUR, Today, render_dashboard
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
