"""The command-centre dashboard (`GET /`): server-rendered HTML with inline SVG, refreshing itself.

No script and no chart library: the page is drawn from the same figures the reports serve, so what the wall screen
shows is what the CSV says.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, tzinfo
from html import escape

from services.analytics.domain.coverage import CoverageHour
from services.analytics.domain.latency import GroupFigures
from shared.contract.registry import ZONE_TARGET_S, ZoneClass

P50_COLOUR = "#2b6cb0"
P90_COLOUR = "#90cdf4"
TARGET_COLOUR = "#c53030"
COMPLIANCE_COLOUR = "#2f855a"
COVERAGE_HOURS = 12
"""Hours of coverage the dashboard shows, the newest on the right."""

_TARGET_LABELS = {
    ZoneClass.KEY_AREA: "1 min key areas",
    ZoneClass.CENTRAL_URBAN: "3 min central",
    ZoneClass.OTHER_URBAN: "5 min urban",
    ZoneClass.RURAL: "15 min rural",
}


@dataclass(frozen=True, slots=True)
class Today:
    calls: int
    arrived: int
    not_arrived: int
    target_met_pct: float | None


LABEL_ROW = 17
"""One row per target label above the chart, the shortest target on top: a target's line starts below its own
label and so never crosses a shorter target's label (1 and 3 minutes sit close together on the axis)."""
FIGURES_W = 230
"""Room right of the bars for their figures: "p50 900 s · p90 990 s · 1234 calls" at the widest."""


def _response_chart(groups: list[GroupFigures], names: dict[str, str]) -> str:
    width, left, row = 900, 200, 34
    top = LABEL_ROW * len(ZONE_TARGET_S) + 14
    arrived = [g for g in groups if g.response_s.p90 is not None]
    scale_max = max([ZONE_TARGET_S[ZoneClass.RURAL] * 1.1, *(g.response_s.p90 or 0 for g in arrived)])
    height = top + row * max(1, len(groups)) + 10

    def x(seconds: float) -> float:
        return left + (width - left - FIGURES_W) * min(seconds, scale_max) / scale_max

    parts = [f'<svg id="response-chart" width="{width}" height="{height}" role="img" aria-label="Response times">']
    for n, (zone, target) in enumerate(ZONE_TARGET_S.items()):
        label_y = LABEL_ROW * (n + 1)
        parts.append(
            f'<line x1="{x(target):.1f}" y1="{label_y + 4}" x2="{x(target):.1f}" y2="{height - 6}" '
            f'stroke="{TARGET_COLOUR}" stroke-dasharray="4 3" stroke-width="1.5"/>'
            f'<text class="target" x="{x(target) + 3:.1f}" y="{label_y}" font-size="11" fill="{TARGET_COLOUR}">'
            f"{escape(_TARGET_LABELS[zone])}</text>"
        )
    for i, group in enumerate(groups):
        y = top + i * row
        name = names.get(group.key, group.key)
        parts.append(
            f'<text class="platform" x="{left - 8}" y="{y + 18}" font-size="13" text-anchor="end">'
            f"<title>{escape(group.key)}</title>{escape(name)}</text>"
        )
        p50, p90 = group.response_s.p50, group.response_s.p90
        if p50 is None or p90 is None:
            parts.append(f'<text x="{left + 4}" y="{y + 18}" font-size="12" fill="#718096">no arrivals</text>')
            continue
        parts.append(
            f'<rect class="p50" x="{left}" y="{y + 4}" width="{x(p50) - left:.1f}" height="20" fill="{P50_COLOUR}"/>'
            f'<rect class="p90" x="{x(p50):.1f}" y="{y + 4}" width="{max(0.0, x(p90) - x(p50)):.1f}" height="20" '
            f'fill="{P90_COLOUR}"/>'
            f'<text class="figures" x="{x(p90) + 6:.1f}" y="{y + 18}" font-size="11">p50 {p50:.0f} s · '
            f"p90 {p90:.0f} s · {group.calls} calls</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _compliance_chart(groups: list[GroupFigures]) -> str:
    width, left, row = 900, 200, 30
    by_key = {g.key: g for g in groups}
    parts = [f'<svg id="compliance-chart" width="{width}" height="{row * len(ZoneClass) + 10}" role="img">']
    for i, zone in enumerate(ZoneClass):
        y = i * row
        group = by_key.get(zone.value)
        pct = None if group is None else group.target_met_pct
        parts.append(f'<text x="{left - 8}" y="{y + 18}" font-size="13" text-anchor="end">{zone.value}</text>')
        if pct is None:
            parts.append(f'<text x="{left + 4}" y="{y + 18}" font-size="12" fill="#718096">no arrivals</text>')
            continue
        bar = (width - left - FIGURES_W) * pct / 100.0
        parts.append(
            f'<rect x="{left}" y="{y + 4}" width="{bar:.1f}" height="20" fill="{COMPLIANCE_COLOUR}"/>'
            f'<text class="share" x="{left + bar + 6:.1f}" y="{y + 18}" font-size="12">{pct:.1f}% within '
            f"{ZONE_TARGET_S[zone]} s</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _coverage_table(hours: list[CoverageHour], tz: tzinfo | None) -> str:
    """Classes down, hours across: the mean share of each class's area reachable within its target."""
    if not hours:
        return '<p id="coverage" class="meta">no coverage samples in the last 24 hours</p>'
    columns = sorted({h.hour for h in hours})[-COVERAGE_HOURS:]
    share = {(h.zone_class, h.hour): h.share for h in hours}
    targets = {h.zone_class: h.target_s for h in hours}
    head = "".join(f"<th>{c.astimezone(tz):%H:00}</th>" for c in columns)
    rows = []
    for zone in ZoneClass:
        if zone.value not in targets:
            continue
        cells = []
        for column in columns:
            value = share.get((zone.value, column))
            if value is None:
                cells.append("<td>—</td>")
                continue
            colour = "#c6f6d5" if value >= 0.8 else "#fefcbf" if value >= 0.5 else "#fed7d7"
            cells.append(f'<td style="background:{colour}">{value * 100:.0f}%</td>')
        rows.append(f'<tr data-zone-class="{zone.value}"><th>{zone.value} ({targets[zone.value]} s)</th>'
                    f'{"".join(cells)}</tr>')  # fmt: skip
    return f'<table id="coverage"><tr><th></th>{head}</tr>{"".join(rows)}</table>'


def render_dashboard(
    *,
    by_platform: list[GroupFigures],
    by_zone: list[GroupFigures],
    today: Today,
    generated_at: datetime,
    refresh_s: int,
    platform_names: dict[str, str] | None = None,
    coverage: list[CoverageHour] | None = None,
) -> str:
    met = "—" if today.target_met_pct is None else f"{today.target_met_pct:.1f}%"
    return f"""<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="{refresh_s}">
<title>快警 Kuaijing · response times</title>
<style>
body {{ font-family: "Noto Sans CJK SC", "Noto Sans SC", "Microsoft YaHei", system-ui, sans-serif; margin: 24px;
  color: #1a202c; background: #fff; }}
h1 {{ font-size: 22px; margin: 0 0 4px; }} h2 {{ font-size: 16px; margin: 24px 0 8px; }}
.counts {{ display: flex; gap: 24px; }} .count {{ border: 1px solid #e2e8f0; padding: 8px 16px; border-radius: 6px; }}
.count b {{ display: block; font-size: 26px; }} .meta {{ color: #718096; font-size: 12px; }}
#coverage {{ border-collapse: collapse; font-size: 13px; }}
#coverage td, #coverage th {{ border: 1px solid #e2e8f0; padding: 4px 8px; text-align: right; }}
</style></head>
<body>
<h1>快警 Kuaijing — response to 110 calls</h1>
<div class="meta">last 7 days · figures as of {generated_at:%Y-%m-%d %H:%M:%S %Z} · refreshes every {refresh_s} s</div>
<h2>Today</h2>
<div class="counts" id="today">
<div class="count"><b>{today.calls}</b>calls</div>
<div class="count"><b>{today.arrived}</b>reached</div>
<div class="count"><b>{today.not_arrived}</b>not reached</div>
<div class="count"><b>{met}</b>within target</div>
</div>
<h2>Response time per platform (p50 dark, p90 light) against the 1-3-5-15 targets</h2>
{_response_chart(by_platform, platform_names or {})}
<h2>Calls reached within their zone's target</h2>
{_compliance_chart(by_zone)}
<h2>Coverage of the promise, hour by hour: the share of each class's area an available unit reaches within its
target</h2>
{_coverage_table(coverage or [], generated_at.tzinfo)}
</body></html>"""
