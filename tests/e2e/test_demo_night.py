"""`kuaijing demo` plays a short simulated night and prints the services' report. Checked against what the
simulator itself recorded, call by call (received, unit sent, arrival within a second, as the dispatcher holds
them). The night is played sixty times faster than real time, so a service that judged anything by its own clock
rather than in event time would be off sixty-fold. (The same night at 240x once gave the same printed report; the
second play cost the suite a minute and a half of a 2-core machine and proved nothing this one does not.)"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from services.analytics.domain.latency import Event, call_facts, figures
from shared.contract.schemas import CallEventKind
from shared.infra.embedded.kafka import EmbeddedKafka
from shared.infra.embedded.postgres import EmbeddedPostgres
from tests.e2e.test_kuaijing_up import read_until
from tests.harness import free_port, free_port_pair

pytestmark = pytest.mark.e2e

NIGHT = ["--hours", "0.25", "--call-every", "40", "--seed", "5", "--from", "18:00"]
"""A quarter of an hour of the evening rush, busy whatever the hour the test runs at (from two hours before the test
began, a run at 04:00 Shaoyang time played a night of six calls): the same time of day and seed give the same calls and
moves on whichever day it falls."""


async def play(tmp_path: Path, speedup: int) -> tuple[list[str], dict[str, Any], list[dict[str, Any]]]:
    """Plays the night at `speedup`; returns the printed report, the simulator's record, the dispatcher's calls."""
    data_dir, record = tmp_path / f"demo-{speedup}", tmp_path / f"night-{speedup}.json"
    ports = {"KAFKA": free_port_pair(), "POSTGRES": free_port(), "INGEST": free_port(), "DISPATCHER": free_port(),
             "ANALYTICS": free_port(), "JT808": free_port()}  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUAIJING_")} | {
        "KUAIJING_DEMO_DATA_DIR": str(data_dir),
        "KUAIJING_LOG_LEVEL": "WARNING",
        **{f"KUAIJING_DEMO_{name}_PORT": str(port) for name, port in ports.items()},
    }
    demo = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli", "demo", *NIGHT, "--speedup", str(speedup), "--record", str(record),
        env=env, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert demo.stdout is not None
        lines = await read_until(demo.stdout, "kuaijing is up")
        tokens = {line.split()[0]: line.split()[1] for line in lines if line.startswith("  ")}
        lines = await read_until(demo.stdout, "the simulated night is over", timeout_s=240)
        end = next(i for i, line in enumerate(lines) if line.startswith("dashboard  "))
        printed = lines[lines.index("report (analytics, event time):") : end]
        assert tokens["viewer"] in lines[end], "the dashboard's URL and the tokens come again under the report"
        night = orjson.loads(record.read_bytes())
        headers = {"Authorization": f"Bearer {tokens['viewer']}"}
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ports['DISPATCHER']}", headers=headers) as c:
            window = {"from": night["start"], "to": night["end"], "limit": 5000}
            calls = (await c.get("/v1/calls", params=window, timeout=30)).json()
        demo.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(demo.wait(), timeout=60) == 0
    finally:
        if demo.returncode is None:
            demo.kill()
            await demo.wait()
        EmbeddedKafka(data_dir, port=ports["KAFKA"]).stop()
        EmbeddedPostgres(data_dir, port=ports["POSTGRES"]).stop()
    return printed, night, calls


def first(timeline: list[dict[str, Any]], event: str) -> dict[str, Any] | None:
    return next((e for e in timeline if e["event"] == event), None)


def seconds_apart(a: str | None, b: str | None) -> float:
    assert a is not None
    assert b is not None
    return abs((datetime.fromisoformat(a) - datetime.fromisoformat(b)).total_seconds())


@pytest.mark.timeout(600)
async def test_a_short_night_played_fast_reports_what_the_simulator_recorded(tmp_path: Path) -> None:
    printed, night, held = await play(tmp_path, speedup=60)
    simulated = {c["call_id"]: c for c in night["calls"]}
    by_id = {c["call_id"]: c for c in held}
    assert set(by_id) == set(simulated), "every call the simulator made, and no other, is at the dispatcher"
    assert len(simulated) >= 10
    groups: dict[str, list[Any]] = defaultdict(list)
    for call_id, sim in simulated.items():
        call = by_id[call_id]
        assert seconds_apart(call["received_at"], sim["received_at"]) <= 1, call_id
        assigned = first(call["timeline"], "assigned")
        assert (assigned and assigned["unit_id"]) == sim["unit_id"], call_id
        arrived = first(call["timeline"], "on_scene")
        if sim["arrived_at"] is None:
            assert arrived is None, call_id
        else:
            assert arrived is not None, f"{call_id}: the dispatcher never saw the unit arrive"
            assert arrived["source"] == "gps"
            assert seconds_apart(arrived["ts"], sim["arrived_at"]) <= 1, call_id
        events = [Event(CallEventKind.CREATED, datetime.fromisoformat(sim["received_at"]), None, None)]
        if sim["unit_id"] is not None:
            events.append(
                Event(CallEventKind.ASSIGNED, datetime.fromisoformat(sim["assigned_at"]), sim["unit_id"], "P")
            )
        if sim["arrived_at"] is not None:
            events.append(Event(CallEventKind.ON_SCENE, datetime.fromisoformat(sim["arrived_at"]), sim["unit_id"], "P"))
        groups[call["zone_class"]].append(
            call_facts(call_id, events, target_s=call["target_s"], zone_class=call["zone_class"])
        )
    reported = {g["key"]: g for g in night["report"]["zone_class"]}
    assert set(reported) == set(groups)
    for zone_class, facts in groups.items():
        expected, got = figures(zone_class, facts), reported[zone_class]
        assert (got["calls"], got["not_arrived"]) == (expected.calls, expected.not_arrived), zone_class
        if expected.response_s.p50 is not None:
            assert abs(got["response_s"]["p50"] - expected.response_s.p50) <= 1, zone_class
            assert abs(got["response_s"]["p90"] - expected.response_s.p90) <= 1, zone_class
            assert expected.target_met_pct is not None
            assert abs(got["target_met_pct"] - expected.target_met_pct) < 0.01, zone_class
    for zone_class in groups:
        assert any(line.strip().startswith(zone_class) for line in printed), (zone_class, printed)
