"""The infrastructure a benchmark runs against: fresh embedded Kafka and PostgreSQL in a temporary data dir."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from shared.infra.embedded.kafka import EmbeddedKafka
from shared.infra.embedded.ports import reserve_port
from shared.infra.embedded.postgres import EmbeddedPostgres
from shared.infra.kafka import ensure_topics
from shared.infra.postgres import migrate


def machine() -> str:
    """Cores, architecture, Python and a one-line CPU speed probe (one core), printed before every benchmark so
    that figures from different machines can be read together: ratios travel, absolute figures go with the probe."""
    began, rounds = time.perf_counter(), 0
    while time.perf_counter() - began < 0.5:
        sum(i * i for i in range(1_000))
        rounds += 1
    return (
        f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}, "
        f"CPU probe {rounds / 0.5:,.0f} sums of 1,000 squares/s on one core"
    )


def rss_mb(pid: int | None) -> float:
    """Resident set size from /proc (Linux)."""
    if pid is None:
        return math.nan
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return math.nan


def cpu_s(pid: int) -> float:
    """CPU seconds (user and system) the process has used so far, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class BenchInfra:
    kafka: str
    database: str
    data_dir: Path

    @property
    def kafka_pid(self) -> int | None:
        return EmbeddedKafka(self.data_dir).running_pid()


@dataclass(frozen=True)
class ServiceProcess:
    url: str
    pid: int


@contextlib.contextmanager
def bench_infra() -> Iterator[BenchInfra]:
    with tempfile.TemporaryDirectory(prefix="kuaijing-bench-") as tmp:
        data_dir = Path(tmp)
        kafka = EmbeddedKafka(data_dir, port=reserve_port(), controller_port=reserve_port(), heap="1g")
        postgres = EmbeddedPostgres(data_dir, port=reserve_port())
        print(f"starting Kafka and PostgreSQL in {data_dir} ...", flush=True)
        try:
            postgres.start()
            kafka.start()
            asyncio.run(prepare_topics_and_schema(kafka.bootstrap, postgres.url))
            yield BenchInfra(kafka=kafka.bootstrap, database=postgres.url, data_dir=data_dir)
        finally:
            kafka.stop()
            postgres.stop()


async def prepare_topics_and_schema(kafka: str, database: str) -> None:
    await ensure_topics(kafka)
    await migrate(database)


@contextlib.contextmanager
def service(infra: BenchInfra, name: str, port: int, **env: str) -> Iterator[str]:
    """Run `kuaijing serve NAME` as its own process, as in production; yields its base URL once ready."""
    with service_process(infra, name, port, **env) as process:
        yield process.url


@contextlib.contextmanager
def service_process(infra: BenchInfra, name: str, port: int, **env: str) -> Iterator[ServiceProcess]:
    """`service`, also telling the process id (for its memory)."""
    environment = {
        **os.environ,
        "KUAIJING_KAFKA_BOOTSTRAP": infra.kafka,
        "KUAIJING_DATABASE_URL": infra.database,
        f"KUAIJING_{name.upper()}_PORT": str(port),
        "KUAIJING_LOG_LEVEL": "WARNING",
        **env,
    }
    with ready_process(name, [sys.executable, "-m", "services.cli", "serve", name], port, environment) as process:
        yield process


@contextlib.contextmanager
def anchor_process(infra: BenchInfra, module: str, port: int) -> Iterator[ServiceProcess]:
    """An anchor's own server (`python -m MODULE PORT`), against the same PostgreSQL as the services."""
    environment = {**os.environ, "KUAIJING_DATABASE_URL": infra.database}
    with ready_process(module, [sys.executable, "-m", module, str(port)], port, environment) as process:
        yield process


@contextlib.contextmanager
def ready_process(name: str, argv: list[str], port: int, environment: dict[str, str]) -> Iterator[ServiceProcess]:
    """Start `argv`, wait until it answers `GET /readyz` on `port`, stop it (SIGTERM) on the way out."""
    process = subprocess.Popen(argv, env=environment)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} not ready after 60 s")
            time.sleep(0.2)
        yield ServiceProcess(url, process.pid)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
