"""`kuaijing up` as a user runs it: embedded infrastructure, services, tokens, and a clean stop."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path

import httpx
import orjson
import pytest

from services.simulator.city import City
from shared.infra.embedded.kafka import EmbeddedKafka
from shared.infra.embedded.postgres import EmbeddedPostgres
from shared.infra.embedded.process import port_open
from tests.harness import free_port, free_port_pair

pytestmark = pytest.mark.e2e

CITY_UNITS = len(City.load().registry().units)


async def read_until(stream: asyncio.StreamReader, marker: str, timeout_s: float = 120) -> list[str]:
    lines: list[str] = []
    async with asyncio.timeout(timeout_s):
        while True:
            raw = await stream.readline()
            if not raw:
                raise AssertionError(f"output ended before {marker!r}: {lines}")
            lines.append(raw.decode().rstrip())
            if marker in lines[-1]:
                return lines


@pytest.mark.timeout(300)
async def test_up_runs_the_system_on_embedded_defaults_and_stops_what_it_started(tmp_path: Path) -> None:
    kafka_port, postgres_port = free_port_pair(), free_port()
    ingest_port, dispatcher_port, analytics_port = free_port(), free_port(), free_port()
    data_dir = tmp_path / "data"
    # PostgreSQL already running: `up` must reuse it and leave it running. Kafka is not: `up` starts and stops it.
    postgres = EmbeddedPostgres(data_dir, port=postgres_port)
    postgres.start()
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("KUAIJING_")
    } | {
        "KUAIJING_DATA_DIR": str(data_dir),
        "KUAIJING_EMBEDDED_KAFKA_PORT": str(kafka_port),
        "KUAIJING_EMBEDDED_POSTGRES_PORT": str(postgres_port),
        "KUAIJING_INGEST_PORT": str(ingest_port),
        "KUAIJING_DISPATCHER_PORT": str(dispatcher_port),
        "KUAIJING_ANALYTICS_PORT": str(analytics_port),
        "KUAIJING_JT808_PORT": str(free_port()),
        "KUAIJING_LOG_LEVEL": "WARNING",
    }  # fmt: skip
    registry = tmp_path / "registry.json"
    registry.write_bytes(
        orjson.dumps(
            {
                "platforms": [{"id": "E2E", "name": "End to end", "kind": "fast_response", "lat": 27.2, "lon": 111.4}],
                "units": [{"id": "E2E-2095", "platform_id": "E2E", "kind": "patrol_car", "callsign": "2095"}],
            }
        )
    )
    # Its own process group, so that even a hung run leaves no service behind (see the finally clause).
    up = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli", "up", env=env, stdout=asyncio.subprocess.PIPE, start_new_session=True
    )
    try:
        assert up.stdout is not None
        lines = await read_until(up.stdout, "kuaijing is up")
        assert any(line.startswith("kafka") and "ready" in line for line in lines)
        assert any(line.startswith("postgres") and "ready" in line for line in lines)
        assert any(line.startswith("ingest") and f":{ingest_port}" in line for line in lines)
        assert any(line.startswith("dispatcher") and f":{dispatcher_port}" in line for line in lines)
        assert any(line.startswith("analytics") and f":{analytics_port}" in line for line in lines)
        assert not any("simulation" in line for line in lines), "up runs no simulated data"
        assert any(line.startswith("dashboard") and f":{analytics_port}/?token=" in line for line in lines)
        tokens = {line.split()[0]: line.split()[1] for line in lines if line.startswith("  ")}
        assert set(tokens) == {"terminal", "dispatcher", "viewer", "admin"}

        importer = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services.cli", "registry", "import", str(registry), env=env
        )
        assert await asyncio.wait_for(importer.wait(), timeout=60) == 0

        def ping() -> dict[str, object]:
            return {"kind": "position", "unit_id": "E2E-2095", "ts": datetime.now(UTC).isoformat(), "lat": 27.2,
                    "lon": 111.4}  # fmt: skip

        async with (
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{ingest_port}", timeout=10) as terminal,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{dispatcher_port}", timeout=10) as client,
        ):
            terminal_headers = {"Authorization": f"Bearer {tokens['terminal']}"}
            headers = {"Authorization": f"Bearer {tokens['viewer']}"}

            async def accepted() -> bool:
                response = await terminal.post("/v1/telemetry", json=ping(), headers=terminal_headers)
                return response.status_code == 202 and response.json()["accepted"] == 1

            deadline = asyncio.get_running_loop().time() + 15
            while not await accepted():
                assert asyncio.get_running_loop().time() < deadline, "ping never accepted"
                await asyncio.sleep(0.3)
            assert (await terminal.post("/v1/telemetry", json=ping())).status_code == 401

            async def on_the_map() -> bool:
                response = await client.get(
                    "/v1/nearest", params={"lat": 27.2, "lon": 111.4, "platform_id": "E2E"}, headers=headers
                )
                return [u["unit_id"] for u in response.json()["units"]] == ["E2E-2095"]

            # The terminal keeps reporting, as one does: ingest and the dispatcher each learn of the imported unit
            # on their own registry poll, and a position heard before the dispatcher knows the unit is not kept
            # (its next one is). One ping only, and a dispatcher learning after ingest, left the map empty.
            while not await on_the_map():
                assert asyncio.get_running_loop().time() < deadline + 60, "unit never reached the live map"
                await asyncio.sleep(1.0)
                await accepted()

            units = (await client.get("/v1/units", headers=headers)).json()
            assert [u["id"] for u in units] == ["E2E-2095"], "up must not register a simulated city"

        up.terminate()
        assert await asyncio.wait_for(up.wait(), timeout=60) == 0
        assert not port_open("127.0.0.1", ingest_port)
        assert not port_open("127.0.0.1", dispatcher_port)
        assert not port_open("127.0.0.1", analytics_port)
        assert not port_open("127.0.0.1", kafka_port), "up started Kafka, so it must stop it"
        assert port_open("127.0.0.1", postgres_port), "up found PostgreSQL running, so it must leave it"
    finally:
        if up.returncode is None:
            os.killpg(up.pid, signal.SIGKILL)
            await up.wait()
            EmbeddedKafka(data_dir, port=kafka_port).stop()
        postgres.stop()


def up_environment(data_dir: Path, ports: dict[str, int]) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("KUAIJING_")} | {
        "KUAIJING_DATA_DIR": str(data_dir),
        "KUAIJING_LOG_LEVEL": "WARNING",
        **{f"KUAIJING_{name.upper()}_PORT": str(port) for name, port in ports.items()},
    }


def fresh_ports() -> dict[str, int]:
    return {"embedded_kafka": free_port_pair(), "embedded_postgres": free_port(), "ingest": free_port(),
            "dispatcher": free_port(), "analytics": free_port(), "jt808": free_port()}  # fmt: skip


@pytest.mark.timeout(300)
async def test_the_services_die_with_an_up_that_is_killed(tmp_path: Path) -> None:
    """`kill -9` of `up` leaves no service behind: the next `up` would otherwise find stale ones on its ports."""
    ports, data_dir = fresh_ports(), tmp_path / "data"
    up = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli", "up", env=up_environment(data_dir, ports),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert up.stdout is not None
        await read_until(up.stdout, "kuaijing is up")
        up.kill()
        await up.wait()
        deadline = asyncio.get_running_loop().time() + 40
        for service in ("ingest", "dispatcher", "analytics", "jt808"):
            while port_open("127.0.0.1", ports[service]):
                assert asyncio.get_running_loop().time() < deadline, f"{service} outlived the up that started it"
                await asyncio.sleep(0.2)
    finally:
        if up.returncode is None:
            up.kill()
            await up.wait()
        EmbeddedKafka(data_dir, port=ports["embedded_kafka"]).stop()
        EmbeddedPostgres(data_dir, port=ports["embedded_postgres"]).stop()


@pytest.mark.timeout(120)
async def test_a_taken_port_stops_up_at_once_naming_the_port_and_the_process(tmp_path: Path) -> None:
    ports = fresh_ports()
    squatter = await asyncio.start_server(lambda _r, w: w.close(), "127.0.0.1", ports["dispatcher"])
    try:
        up = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services.cli", "up", env=up_environment(tmp_path / "data", ports),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        stdout, stderr = await asyncio.wait_for(up.communicate(), timeout=30)
    finally:
        squatter.close()
    assert up.returncode == 1
    message = stderr.decode()
    assert f"port {ports['dispatcher']} is taken by pid {os.getpid()}" in message, message
    assert "KUAIJING_DISPATCHER_PORT" in message
    assert "ready" not in stdout.decode()
    assert not port_open("127.0.0.1", ports["embedded_kafka"]), "nothing is started when a port is taken"


@pytest.mark.timeout(300)
async def test_demo_runs_a_simulated_city_in_a_world_of_its_own(tmp_path: Path) -> None:
    """`kuaijing demo` ignores the settings of a real deployment (here: a Kafka and a database `up` would use) and
    runs its own embedded Kafka and PostgreSQL in its own data directory, with the simulated city on top."""
    demo_dir, ports = tmp_path / "demo", fresh_ports()
    env = up_environment(tmp_path / "real", {}) | {
        "KUAIJING_KAFKA_BOOTSTRAP": "real-kafka.invalid:9092",
        "KUAIJING_DATABASE_URL": "postgresql://real@real-db.invalid/kuaijing",
        "KUAIJING_DEMO_DATA_DIR": str(demo_dir),
        **{f"KUAIJING_DEMO_{name.removeprefix('embedded_').upper()}_PORT": str(port) for name, port in ports.items()},
    }
    demo = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli", "demo", "--call-every", "5", "--seed", "7", env=env,
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert demo.stdout is not None
        lines = await read_until(demo.stdout, "kuaijing is up")
        assert any(line.startswith("kafka") and f":{ports['embedded_kafka']}" in line for line in lines)
        await read_until(demo.stdout, "simulation running")
        progress = await read_until(demo.stdout, "units online")
        assert "calls" in progress[-1]
        assert "pings/s" in progress[-1]
        tokens = {line.split()[0]: line.split()[1] for line in lines if line.startswith("  ")}
        headers = {"Authorization": f"Bearer {tokens['viewer']}"}
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ports['dispatcher']}", timeout=10) as client:

            async def city_online() -> bool:
                units = (await client.get("/v1/units", headers=headers)).json()
                # All are registered; a few may be in a dead spot, silent for longer than the freshness limit.
                registered = sum(1 for u in units if u["id"].startswith("SY-"))
                online = sum(1 for u in units if u["id"].startswith("SY-") and u["online"])
                return registered == CITY_UNITS and online >= CITY_UNITS - 30

            deadline = asyncio.get_running_loop().time() + 90
            while not await city_online():
                assert asyncio.get_running_loop().time() < deadline, "the simulated city never came online"
                await asyncio.sleep(0.5)
        assert (demo_dir / "kafka").is_dir()
        assert (demo_dir / "postgres").is_dir()
        assert not (tmp_path / "real").exists(), "the demo wrote where up keeps its data"
        demo.terminate()
        assert await asyncio.wait_for(demo.wait(), timeout=60) == 0
        for name in ("ingest", "dispatcher", "analytics", "embedded_kafka"):
            assert not port_open("127.0.0.1", ports[name]), f"{name} still serving after the demo stopped"
    finally:
        if demo.returncode is None:
            demo.kill()
            await demo.wait()
        EmbeddedKafka(demo_dir, port=ports["embedded_kafka"]).stop()
        EmbeddedPostgres(demo_dir, port=ports["embedded_postgres"]).stop()
