"""What the simulation prints: a progress line that says where the night is, and the services' report as tables
beside what the simulation itself recorded. The e2e night test reads these lines, so their shape is checked here."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx

from services.simulator.city import City
from services.simulator.night import Night
from services.simulator.runner import BAR, _online, _progress, _table

START = datetime(2026, 11, 30, 14, 0, tzinfo=UTC)


def played(minutes: int) -> Night:
    night = Night(City.load(), start=START, hours=1, call_every_s=30, seed=3)
    for tick in night.ticks():
        if tick.at >= START + timedelta(minutes=minutes):
            break
    return night


def test_the_progress_line_shows_the_clock_the_bar_calls_and_units() -> None:
    night = played(30)
    line = _progress(night, 1234.4, online=200)
    assert line.startswith(f"[{night.now + night.city.utc_offset:%H:%M:%S}] ["), "the city's local clock"
    assert night.city.utc_offset, "the default city is not on UTC, so a UTC clock would fail the line above"
    bar = line.split("] [", 1)[1].split("]", 1)[0]
    assert len(bar) == BAR
    assert bar.count("#") == BAR // 2
    open_ = sum(1 for c in night.calls.values() if c.cleared_at is None)
    assert f"calls {len(night.calls)} ({open_} open" in line
    assert f"units online 200/{len(night.vehicles)}" in line
    assert line.endswith("pings/s 1,234")
    assert f"units online ?/{len(night.vehicles)}" in _progress(night, 0, online=None)


def test_the_report_table_has_a_row_per_group_and_the_simulations_own_count() -> None:
    night = played(20)
    report = {
        "zone_class": [
            {"key": "urban", "calls": 7, "not_arrived": 2, "response_s": {"p50": 201.4, "p90": 288.0},
             "target_met_pct": 71.43},
            {"key": "key_area", "calls": 1, "not_arrived": 1, "response_s": None, "target_met_pct": None},
        ],
        "platform": [{"key": "SY-P01", "calls": 8, "not_arrived": 3, "response_s": {"p50": 199.6, "p90": 290.2},
                      "target_met_pct": 62.5}],
    }  # fmt: skip
    lines = _table(report, night).splitlines()
    assert "report (analytics, event time):" in lines
    rows = {line.split()[0]: line.split()[1:] for line in lines if line.startswith("  ") and line.split()}
    assert rows["key_area"] == ["1", "0", "-", "-", "-"], "a group nobody reached prints dashes, not zeros"
    assert rows["urban"] == ["7", "5", "201", "288", "71.4%"]
    assert rows["SY-P01"] == ["8", "5", "200", "290", "62.5%"]
    assert lines.index("  by zone class") < lines.index("  by platform")
    calls = night.calls.values()
    sent, reached = sum(c.unit_id is not None for c in calls), sum(c.arrived_at is not None for c in calls)
    assert lines[-1] == f"simulation recorded: {len(calls)} calls, {sent} with a unit sent, {reached} reached"


async def test_units_online_come_from_the_dispatchers_metrics() -> None:
    metrics = 'kuaijing_dispatcher_units{state="offline"} 3.0\nkuaijing_dispatcher_units{state="online"} 228.0\n'

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text=metrics if request.url.path == "/metrics" else "")

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer), base_url="http://d") as dispatcher:
        assert await _online(dispatcher) == 228
    silent = httpx.MockTransport(lambda _: httpx.Response(200))
    async with httpx.AsyncClient(transport=silent, base_url="http://d") as d:
        assert await _online(d) is None, "a dispatcher without the gauge"

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(down), base_url="http://d") as d:
        assert await _online(d) is None
