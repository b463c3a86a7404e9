"""Drives the simulated city against the running services, as terminals and dispatch consoles would: vehicles post
their positions to ingest, 110 calls arrive at the dispatcher, responders drive to them (the dispatcher sees them
arrive by GPS) and clear after a while. It only talks HTTP, so it exercises the system exactly as users do."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from datetime import UTC, datetime

import httpx

from services.simulator.city import CATEGORIES, Task, Vehicle, call_location, city_registry, vehicles_of

log = logging.getLogger(__name__)


class Simulation:
    def __init__(
        self,
        *,
        ingest_url: str,
        dispatcher_url: str,
        tokens: dict[str, str],
        tick_s: float = 2.0,
        call_every_s: float = 20.0,
        seed: int | None = None,
    ) -> None:
        self._ingest = httpx.AsyncClient(base_url=ingest_url, headers=_bearer(tokens["terminal"]), timeout=10)
        self._dispatcher = httpx.AsyncClient(base_url=dispatcher_url, headers=_bearer(tokens["dispatcher"]), timeout=10)
        self._admin_token = tokens["admin"]
        self._tick_s = tick_s
        self._call_every_s = call_every_s
        self._rng = random.Random(seed)
        self.vehicles: dict[str, Vehicle] = {}
        self.calls_created = 0
        self.calls_closed = 0
        self.pings_sent = 0
        self._to_dispatch: list[tuple[float, str, float, float]] = []

    async def run(self, stop: asyncio.Event) -> None:
        try:
            await self._seed()
            next_call = time.monotonic() + self._rng.expovariate(1 / self._call_every_s)
            last_report = time.monotonic()
            while not stop.is_set():
                started = time.monotonic()
                await self._tick()
                await self._dispatch_due()
                if started >= next_call:
                    await self._new_call()
                    next_call = started + self._rng.expovariate(1 / self._call_every_s)
                if started - last_report >= 30:
                    last_report = started
                    log.info(
                        "simulation: %s vehicles, %s pings, %s calls (%s closed), %s responding",
                        len(self.vehicles),
                        self.pings_sent,
                        self.calls_created,
                        self.calls_closed,
                        sum(1 for v in self.vehicles.values() if v.task is not Task.PATROL),
                    )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=max(0.0, self._tick_s - (time.monotonic() - started)))
        finally:
            await self._ingest.aclose()
            await self._dispatcher.aclose()

    async def _seed(self) -> None:
        registry = city_registry(rng=self._rng)
        response = await self._dispatcher.post(
            "/v1/registry/import",
            content=registry.model_dump_json(by_alias=True),
            headers={**_bearer(self._admin_token), "Content-Type": "application/json"},
        )
        response.raise_for_status()
        self.vehicles = {v.unit_id: v for v in vehicles_of(registry, self._rng)}
        await self._await_ingest_knows(next(iter(self.vehicles.values())))
        log.info(
            "simulated city: %s platforms, %s vehicles, %s zones around Shaoyang",
            len(registry.platforms),
            len(registry.units),
            len(registry.zones),
        )

    async def _await_ingest_knows(self, vehicle: Vehicle, timeout_s: float = 15.0) -> None:
        """Ingest follows the registry within a poll interval; report only once it knows the fleet."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            ping = vehicle.position_ping(datetime.now(UTC), satellites=12)
            response = await self._ingest.post("/v1/telemetry", json=ping)
            if response.status_code == 202 and response.json()["accepted"] == 1:
                return
            await asyncio.sleep(0.25)
        log.warning("ingest did not learn the simulated fleet within %.0f s; reporting anyway", timeout_s)

    async def _tick(self) -> None:
        now = datetime.now(UTC)
        pings = []
        for vehicle in self.vehicles.values():
            vehicle.step(self._tick_s, self._rng)
            vehicle.seq += 1
            pings.append(vehicle.position_ping(now, satellites=self._rng.randint(9, 18)))
            if vehicle.seq % 15 == 1:
                pings.append(
                    {
                        "kind": "video",
                        "unit_id": vehicle.unit_id,
                        "ts": now.isoformat(),
                        "channel": 1,
                        "state": "streaming",
                        "bitrate_kbps": 1800,
                        "fps": 25,
                        "resolution": "1280x720",
                        "codec": "H.264",
                        "network": "4G",
                        "signal_dbm": self._rng.randint(-100, -70),
                    }
                )
        try:
            response = await self._ingest.post("/v1/telemetry", json=pings)
            if response.status_code == 202:
                answer = response.json()
                self.pings_sent += answer["accepted"]
                for rejection in answer["rejected"][:3]:
                    log.warning("ingest rejected a simulated ping: %s", rejection["error"])
        except httpx.HTTPError as e:
            log.warning("telemetry post failed: %s", e)
        await self._advance_responders(now)

    async def _advance_responders(self, now: datetime) -> None:
        for vehicle in self.vehicles.values():
            if vehicle.task is Task.RESPONDING and vehicle.arrived():
                vehicle.task = Task.ON_SCENE
                vehicle.clear_at = time.monotonic() + self._rng.uniform(60, 240)
            elif (
                vehicle.task is Task.ON_SCENE and vehicle.clear_at is not None and time.monotonic() >= vehicle.clear_at
            ):
                response = await self._dispatcher.post(
                    f"/v1/units/{vehicle.unit_id}/status", json={"status": "available", "ts": now.isoformat()}
                )
                if response.status_code == 200:
                    self.calls_closed += 1
                vehicle.task, vehicle.target, vehicle.call_id, vehicle.clear_at = Task.PATROL, None, None, None

    async def _new_call(self) -> None:
        """A 110 call arrives; the console operator takes a few seconds to read it and dispatch."""
        lat, lon = call_location(self._rng)
        body = {
            "call_id": f"SIM-{uuid.uuid4().hex[:12]}",
            "lat": lat,
            "lon": lon,
            "category": self._rng.choice(CATEGORIES),
            "priority": self._rng.choice((1, 2, 2, 3)),
        }
        try:
            response = await self._dispatcher.post("/v1/calls", json=body)
        except httpx.HTTPError as e:
            log.warning("call post failed: %s", e)
            return
        if response.status_code != 201:
            log.warning("call refused (%s): %s", response.status_code, response.text)
            return
        self.calls_created += 1
        due = time.monotonic() + self._rng.uniform(5, 40)
        self._to_dispatch.append((due, str(body["call_id"]), lat, lon))

    async def _dispatch_due(self) -> None:
        now = time.monotonic()
        due, self._to_dispatch = (
            [c for c in self._to_dispatch if c[0] <= now],
            [c for c in self._to_dispatch if c[0] > now],
        )
        for _, call_id, lat, lon in due:
            nearest = await self._dispatcher.get("/v1/nearest", params={"lat": lat, "lon": lon, "k": 3})
            for candidate in nearest.json().get("units", []) if nearest.status_code == 200 else []:
                unit_id = candidate["unit_id"]
                assigned = await self._dispatcher.post(f"/v1/calls/{call_id}/assign", json={"unit_id": unit_id})
                vehicle = self.vehicles.get(unit_id)
                if assigned.status_code == 200 and vehicle is not None:
                    vehicle.task, vehicle.target, vehicle.call_id = Task.RESPONDING, (lat, lon), call_id
                    await self._dispatcher.post(f"/v1/units/{unit_id}/status", json={"status": "en_route"})
                    break
            else:
                log.info("call %s: no unit available; it stays unassigned", call_id)


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
