"""Service replicas as separate processes (`python -m services.<name>`) over the suite's real Kafka and PostgreSQL,
for the scale-out tests: started with the suite's tokens, waited for until ready, stopped with SIGTERM (or found
already SIGKILLed by the test)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import httpx

from tests.conftest import TOKENS, Infra
from tests.harness import eventually, free_port


@dataclass
class Replica:
    url: str
    jt808_port: int
    process: subprocess.Popen[bytes]

    def client(self, role: str = "dispatcher") -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, headers={"Authorization": f"Bearer {TOKENS[role]}"}, timeout=30)


def start_replica(
    infra: Infra,
    service: str,
    *,
    port: int | None = None,
    jt808_port: int | None = None,
    env: Mapping[str, str] | None = None,
) -> Replica:
    """`port` and `jt808_port` for a replica that takes over a dead one's addresses (free ones otherwise); `env`
    adds settings."""
    port, jt808_port = port or free_port(), jt808_port or free_port()
    environment = {k: v for k, v in os.environ.items() if not k.startswith("KUAIJING_")} | {
        "KUAIJING_KAFKA_BOOTSTRAP": infra.kafka,
        "KUAIJING_DATABASE_URL": infra.database,
        "KUAIJING_API_TOKENS": ",".join(f"{role}:{token}" for role, token in TOKENS.items()),
        f"KUAIJING_{service.upper()}_PORT": str(port),
        "KUAIJING_JT808_PORT": str(jt808_port),
        "KUAIJING_CONSUMER_POLL_MS": "50",
        "KUAIJING_REGISTRY_POLL_S": "0.2",
        "KUAIJING_LOG_LEVEL": "WARNING",
        **(env or {}),
    }
    process = subprocess.Popen([sys.executable, "-m", f"services.{service}"], env=environment)
    return Replica(f"http://127.0.0.1:{port}", jt808_port, process)


@contextmanager
def running(replicas: list[Replica]) -> Iterator[list[Replica]]:
    """The replicas once every one answers `/readyz`; all stopped when the block ends."""

    async def all_ready() -> bool:
        for replica in replicas:
            assert replica.process.poll() is None, "a replica exited during start-up"
            try:
                async with httpx.AsyncClient(base_url=replica.url, timeout=2) as c:
                    if (await c.get("/readyz")).status_code != 200:
                        return False
            except httpx.HTTPError:
                return False
        return True

    try:
        asyncio.run(eventually(all_ready, timeout_s=90, what="every replica ready"))
        yield replicas
    finally:
        for replica in replicas:
            if replica.process.poll() is None:
                replica.process.send_signal(signal.SIGTERM)
        for replica in replicas:
            try:
                replica.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                replica.process.kill()
                replica.process.wait()
