"""Plays a simulated night (`services/simulator/night.py`) against the running services, as terminals and dispatch
consoles would, at `speedup` times real time: each tick's fixes go to ingest, then its calls, assignments and
clears to the dispatcher, every one carrying its event time. Prints progress while it runs and, at the end, the
services' own report beside what the simulation recorded.

The night is played in the past (it ends about when it is played), so no timestamp is ahead of ingest's clock;
the services judge it in event time (the dispatcher with `KUAIJING_CLOCK=event`), so the figures are the same at
any speed-up. A crew is cleared only once the dispatcher has seen it arrive, which keeps a busy machine from
turning a GPS arrival into a race.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson

from services.simulator.city import City
from services.simulator.night import Assign, Clear, NewCall, Night, Tick, Transport, transport_of
from services.simulator.terminals import Jt808Terminal, RawTopicRelay
from shared.infra.kafka import KafkaClient

log = logging.getLogger(__name__)

PROGRESS_EVERY_S = 5.0
IN_FLIGHT = 4
BAR = 24


@dataclass(frozen=True)
class Urls:
    ingest: str
    dispatcher: str
    analytics: str
    jt808_port: int
    kafka: KafkaClient


class Simulation:
    def __init__(
        self,
        *,
        urls: Urls,
        tokens: dict[str, str],
        city: City,
        start: datetime | None,
        speedup: float,
        hours: float,
        call_every_s: float,
        seed: int,
        record: Path | None = None,
        follow_advice: bool = False,
    ) -> None:
        """`follow_advice`: the operator also moves idle vehicles up as the dispatcher's `GET /v1/advice` says (the
        night then depends on when advice arrives, so it no longer replays exactly)."""
        self._urls = urls
        self._follow_advice = follow_advice
        self.advice_followed: set[str] = set()
        self._tokens = tokens
        self._city = city
        self._start = start
        self._speedup = speedup
        self._hours = hours
        self._call_every_s = call_every_s
        self._seed = seed
        self._record = record
        self.pings_sent = 0
        self.refused: dict[str, int] = {}
        self._in_flight: set[asyncio.Task[None]] = set()
        self._last_post: asyncio.Task[None] | None = None
        self._terminals: dict[str, Jt808Terminal] = {}
        self._relay: RawTopicRelay

    def _client(self, url: str, role: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {self._tokens[role]}"}, timeout=30)

    async def run(self, stop: asyncio.Event) -> bool:
        """Plays the whole night unless `stop` is set first; True when it was played to the end."""
        registry = self._city.registry()
        start = self._start or datetime.now(UTC).replace(microsecond=0) - timedelta(hours=self._hours, minutes=1)
        night = Night(self._city, start=start, hours=self._hours, call_every_s=self._call_every_s, seed=self._seed)
        async with (
            self._client(self._urls.ingest, "terminal") as ingest,
            self._client(self._urls.dispatcher, "dispatcher") as dispatcher,
            self._client(self._urls.analytics, "viewer") as analytics,
            self._client(self._urls.dispatcher, "admin") as admin,
        ):
            response = await admin.post(
                "/v1/registry/import",
                content=registry.model_dump_json(by_alias=True),
                headers={"Content-Type": "application/json"},
            )
            response.raise_for_status()
            await self._ingest_knows(ingest, next(iter(night.vehicles)))
            phones = {u.id: u.terminal_id or "" for u in registry.units}
            self._terminals = {
                unit: Jt808Terminal(self._urls.jt808_port, phones[unit])
                for i, unit in enumerate(night.vehicles)
                if transport_of(i) is Transport.JT808
            }
            self._relay = RawTopicRelay(self._urls.kafka)
            try:
                await self._relay.start()
                return await self._play(night, stop, ingest, dispatcher, analytics)
            finally:
                await asyncio.gather(*(t.close() for t in self._terminals.values()))
                await self._relay.stop()

    async def _play(
        self,
        night: Night,
        stop: asyncio.Event,
        ingest: httpx.AsyncClient,
        dispatcher: httpx.AsyncClient,
        analytics: httpx.AsyncClient,
    ) -> bool:
        print(
            f"simulation running: {self._city.name}, {len(night.vehicles)} vehicles ({len(self._terminals)} over "
            f"JT/T 808), {self._hours:g} simulated hours from {night.start + self._city.utc_offset:%Y-%m-%d %H:%M} "
            f"local time at {self._speedup:g}x (seed {self._seed})",
            flush=True,
        )
        began = time.monotonic()
        last_progress, pings_then = began, 0
        for tick in night.ticks():
            due = began + (tick.at - night.start).total_seconds() / self._speedup
            try:
                await asyncio.wait_for(stop.wait(), timeout=max(0.0, due - time.monotonic()))
                return False
            except TimeoutError:
                pass
            await self._report(ingest, tick)
            # No need to wait for the fixes in flight: an arrival counts only from fixes after the assignment,
            # which are handed over only once the assignment is answered; a clear waits to see the arrival.
            await self._act(dispatcher, tick)
            if self._follow_advice and any(isinstance(a, Assign) for a in tick.actions):
                await self.follow_advice(dispatcher, night, tick.at)
            if time.monotonic() - last_progress >= PROGRESS_EVERY_S:
                rate = (self.pings_sent - pings_then) / (time.monotonic() - last_progress)
                last_progress, pings_then = time.monotonic(), self.pings_sent
                print(_progress(night, rate, await _online(dispatcher)), flush=True)
        await self._reported()
        rate = self.pings_sent / (time.monotonic() - began)
        print(_progress(night, rate, await _online(dispatcher)), flush=True)
        report = await self._report_of(analytics, night)
        if self._record is not None:
            calls = [c.as_json() for c in night.calls.values()]
            document = {"start": night.start.isoformat(), "end": night.end.isoformat(), "calls": calls}
            self._record.write_bytes(orjson.dumps(document | {"report": report}))
        print(_table(report, night), flush=True)
        print(f"\ndashboard  {self._urls.analytics}/?token={self._tokens['viewer']}", flush=True)
        for role in ("viewer", "dispatcher", "terminal", "admin"):
            print(f"  {role:<10} {self._tokens[role]}", flush=True)
        return True

    async def _ingest_knows(self, ingest: httpx.AsyncClient, unit_id: str, timeout_s: float = 30.0) -> None:
        """Ingest follows the registry within a poll interval; play only once it knows the fleet."""
        probe = {"kind": "position", "unit_id": unit_id, "ts": "2020-01-01T00:00:00+00:00", "lat": 27.2, "lon": 111.4}
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            response = await ingest.post("/v1/telemetry", json=probe)
            if response.status_code == 202 and response.json()["accepted"] == 1:
                return
            await asyncio.sleep(0.25)
        raise RuntimeError(f"ingest did not learn the simulated fleet within {timeout_s:.0f} s")

    async def _report(self, ingest: httpx.AsyncClient, tick: Tick) -> None:
        """The tick's fixes go out over each vehicle's transport while earlier ticks' are still being acknowledged
        (a few ticks at a time, each unit's in order)."""
        if len(self._in_flight) >= IN_FLIGHT:
            await asyncio.wait(self._in_flight, return_when=asyncio.FIRST_COMPLETED)
        http: list[dict[str, Any]] = []
        raw: list[dict[str, Any]] = []
        acknowledged: list[asyncio.Future[Any]] = []
        for report in tick.reports:
            match report.transport:
                case Transport.HTTP:
                    http += [*report.late, *report.pings]
                case Transport.KAFKA:
                    raw += [*report.late, *report.pings]
                case Transport.JT808 if report.heartbeat:
                    acknowledged.append(self._terminals[report.unit_id].heartbeat())
                case Transport.JT808:
                    terminal = self._terminals[report.unit_id]
                    acknowledged += terminal.report(report.pings[0], report.late, video_lost=report.video_lost)
                    self.pings_sent += len(report.late) + 1
        acknowledged += await self._relay.relay(raw)
        self.pings_sent += len(raw)
        task = asyncio.create_task(self._post_fixes(ingest, http, acknowledged, self._last_post))
        self._last_post = task
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    async def _reported(self) -> None:
        await asyncio.gather(*self._in_flight)

    async def _post_fixes(
        self,
        ingest: httpx.AsyncClient,
        http: list[dict[str, Any]],
        acknowledged: list[asyncio.Future[Any]],
        previous: asyncio.Task[None] | None,
    ) -> None:
        """The HTTP vehicles' pings, sent until accepted, and the other transports' acknowledgements. A tick's pings
        are posted only after the previous tick's were accepted: two posts in flight at once could reach the topic
        in the other order, and a vehicle's later fix would then be seen first (an arrival a tick late)."""
        await asyncio.gather(*acknowledged)
        if previous is not None:
            await previous
        if not http:
            return
        answer = await self._send(ingest, "/v1/telemetry", http, ok=(202,))
        self.pings_sent += answer["accepted"]
        for rejection in answer["rejected"][:3]:
            log.warning("ingest rejected a simulated ping: %s", rejection["error"])

    async def _act(self, dispatcher: httpx.AsyncClient, tick: Tick) -> None:
        for action in tick.actions:
            match action:
                case NewCall():
                    body = {"call_id": action.call_id, "lat": action.lat, "lon": action.lon,
                            "category": action.category, "priority": action.priority,
                            "received_at": action.received_at.isoformat()}  # fmt: skip
                    await self._send(dispatcher, "/v1/calls", body, ok=(200, 201))
                case Assign():
                    body = {"unit_id": action.unit_id, "ts": action.ts.isoformat()}
                    await self._send(dispatcher, f"/v1/calls/{action.call_id}/assign", body, ok=(200,))
                case Clear():
                    await self._seen_arriving(dispatcher, action.call_id)
                    body = {"status": "available", "call_id": action.call_id, "ts": action.ts.isoformat()}
                    await self._send(dispatcher, f"/v1/units/{action.unit_id}/status", body, ok=(200,))

    async def follow_advice(self, dispatcher: httpx.AsyncClient, night: Night, at: datetime) -> int:
        """Move up the vehicles named in advice not followed yet; how many were moved."""
        response = await dispatcher.get("/v1/advice")
        response.raise_for_status()
        moved = 0
        for advice in response.json():
            if advice["advice_id"] in self.advice_followed:
                continue
            self.advice_followed.add(advice["advice_id"])
            if night.post(advice["unit_id"], (advice["to_lat"], advice["to_lon"]), at):
                moved += 1
                log.info("following advice %s: %s moves up to %s", advice["advice_id"], advice["unit_id"],
                         advice["to_cell"])  # fmt: skip
        return moved

    async def _seen_arriving(self, dispatcher: httpx.AsyncClient, call_id: str, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            timeline = (await dispatcher.get(f"/v1/calls/{call_id}")).json().get("timeline", [])
            if any(e["event"] == "on_scene" for e in timeline):
                return
            await asyncio.sleep(0.05)
        log.warning("the dispatcher did not see the unit of %s arrive within %.0f s; clearing it", call_id, timeout_s)

    async def _send(self, client: httpx.AsyncClient, path: str, body: object, *, ok: tuple[int, ...]) -> dict[str, Any]:
        """As a terminal or console does: a 503 or a lost connection means send again; anything else is a bug of
        the simulation or the service, and stops the night."""
        for _ in range(100):
            try:
                response = await client.post(path, json=body)
            except httpx.HTTPError as e:
                self.refused[type(e).__name__] = self.refused.get(type(e).__name__, 0) + 1
                await asyncio.sleep(0.2)
                continue
            if response.status_code in ok:
                answer: dict[str, Any] = response.json()
                return answer
            if response.status_code != 503:
                raise RuntimeError(f"{path} answered {response.status_code}: {response.text}")
            self.refused["503"] = self.refused.get("503", 0) + 1
            await asyncio.sleep(0.2)
        raise RuntimeError(f"{path} refused 100 times in a row")

    async def _report_of(self, analytics: httpx.AsyncClient, night: Night, timeout_s: float = 60.0) -> dict[str, Any]:
        """Analytics' figures for the night, once it holds every call the night made and every arrival."""
        window = {"from": night.start.isoformat(), "to": (night.end + timedelta(seconds=1)).isoformat()}
        reached = sum(1 for c in night.calls.values() if c.arrived_at is not None)
        deadline = time.monotonic() + timeout_s
        while True:
            by_zone = await analytics.get("/v1/reports/response-times", params=window | {"group_by": "zone_class"})
            groups = by_zone.json()["groups"]
            calls = sum(g["calls"] for g in groups)
            arrived = sum(g["calls"] - g["not_arrived"] for g in groups)
            if (calls, arrived) == (len(night.calls), reached) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        by_platform = await analytics.get("/v1/reports/response-times", params=window | {"group_by": "platform"})
        return {"zone_class": groups, "platform": by_platform.json()["groups"]}


def _progress(night: Night, pings_per_s: float, online: int | None) -> str:
    """One line of where the night is; its clock is the city's local time, as the opening line's start is."""
    done = night.progress
    bar = "#" * round(done * BAR) + "." * (BAR - round(done * BAR))
    calls = night.calls.values()
    open_ = sum(1 for c in calls if c.cleared_at is None)
    responding = sum(1 for c in calls if c.unit_id is not None and c.cleared_at is None)
    local = night.now + night.city.utc_offset
    return (
        f"[{local:%H:%M:%S}] [{bar}] {done:4.0%}  calls {len(night.calls)} ({open_} open, {responding} with a "
        f"unit)  units online {'?' if online is None else online}/{len(night.vehicles)}  pings/s {pings_per_s:,.0f}"
    )


async def _online(dispatcher: httpx.AsyncClient) -> int | None:
    """Units the dispatcher counts online (a fix within its freshness limit, by its clock): from its `/metrics`."""
    try:
        text = (await dispatcher.get("/metrics")).text
    except httpx.HTTPError:
        return None
    for line in text.splitlines():
        if line.startswith('kuaijing_dispatcher_units{state="online"}'):
            return int(float(line.rsplit(" ", 1)[1]))
    return None


def _table(report: dict[str, Any], night: Night) -> str:
    """The services' report (analytics) per zone class and per platform, and what the simulation recorded."""
    lines = ["", "report (analytics, event time):"]
    header = f"  {'':<16}{'calls':>7}{'reached':>9}{'p50 s':>8}{'p90 s':>8}{'within target':>15}"
    for title, key in (("zone class", "zone_class"), ("platform", "platform")):
        lines += ["", f"  by {title}", header]
        for g in sorted(report[key], key=lambda g: str(g["key"])):
            response = g["response_s"] or {}
            met = g["target_met_pct"]
            lines.append(
                f"  {g['key']:<16}{g['calls']:>7}{g['calls'] - g['not_arrived']:>9}"
                f"{_num(response.get('p50')):>8}{_num(response.get('p90')):>8}"
                f"{'-' if met is None else f'{met:.1f}%':>15}"
            )
    calls = list(night.calls.values())
    sent = sum(1 for c in calls if c.unit_id is not None)
    reached = sum(1 for c in calls if c.arrived_at is not None)
    lines += ["", f"simulation recorded: {len(calls)} calls, {sent} with a unit sent, {reached} reached"]
    return "\n".join(lines)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def main_loop(simulation: Simulation) -> int:
    """Runs `simulation` until the night ends or SIGINT/SIGTERM; 0 when it played to the end."""

    async def run() -> bool:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        return await simulation.run(stop)

    try:
        return 0 if asyncio.run(run()) else 1
    except (RuntimeError, httpx.HTTPError) as e:
        print(f"simulation stopped: {e}", file=sys.stderr)
        return 1
