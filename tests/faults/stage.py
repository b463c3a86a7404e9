"""The stage of the fault tests: a Kafka broker and a PostgreSQL cluster of their own, so a test may kill either
without harming the rest of the suite, and the three services as processes that a test may SIGKILL and start
again at the same addresses, as an orchestrator would."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from dataclasses import dataclass, field

import httpx

from shared.infra.embedded.kafka import EmbeddedKafka
from shared.infra.embedded.postgres import EmbeddedPostgres
from shared.infra.embedded.process import pid_alive
from tests.conftest import Infra
from tests.harness import eventually, fresh_database
from tests.integration.test_analytics import metric
from tests.replicas import Replica, start_replica

SERVICES = ("ingest", "dispatcher", "analytics")
READY_WITHIN_S = 90.0
"""How long a service may take to answer `/readyz` again after a fault, without a human."""


@dataclass
class Stage:
    infra: Infra
    kafka: EmbeddedKafka
    postgres: EmbeddedPostgres
    replicas: dict[str, Replica] = field(default_factory=dict)
    groups: dict[str, str] = field(default_factory=dict)
    envs: dict[str, dict[str, str]] = field(default_factory=dict)

    def settings_of(self) -> dict[str, str]:
        """What every process on the stage shares: its consumer groups, and a terminal timeout short enough for a
        half-open connection left by a killed client to go within a test."""
        return {
            "KUAIJING_RAW_GROUP": self.groups["raw"],
            "KUAIJING_HISTORY_GROUP": self.groups["history"],
            "KUAIJING_ANALYTICS_GROUP": self.groups["analytics"],
            "KUAIJING_JT808_IDLE_TIMEOUT_S": "30",
        }

    def start(self, name: str, *, env: dict[str, str] | None = None) -> Replica:
        """Starts `name` (again at the addresses and with the settings it had, if it ran before): a service, or a
        service, a dash and a role (`ingest-history`, `analytics-replay`)."""
        service = name.split("-")[0]
        before = self.replicas.get(name)
        env = self.envs[name] = env if env is not None else self.envs.get(name, {})
        replica = start_replica(
            self.infra,
            service,
            port=int(before.url.rsplit(":", 1)[1]) if before else None,
            jt808_port=before.jt808_port if before else None,
            env=self.settings_of() | env,
        )
        self.replicas[name] = replica
        return replica

    def kill(self, name: str) -> float:
        """SIGKILL, as the kernel's OOM killer or a lost node would; returns when it happened (monotonic)."""
        process = self.replicas[name].process
        process.send_signal(signal.SIGKILL)
        process.wait()
        return time.monotonic()

    def kill_broker(self) -> float:
        pid = self.kafka.running_pid()
        assert pid is not None, "the stage's broker is not running"
        os.kill(pid, signal.SIGKILL)
        while pid_alive(pid):
            time.sleep(0.05)
        return time.monotonic()

    async def restart_broker(self) -> None:
        await asyncio.to_thread(self.kafka.start)

    def stop_database_immediately(self) -> float:
        self.postgres.stop("immediate")
        return time.monotonic()

    async def restart_database(self) -> None:
        await asyncio.to_thread(self.postgres.start)

    async def ready(self, *names: str, since: float, timeout_s: float = READY_WITHIN_S) -> dict[str, float]:
        """Seconds from `since` until each service answered `/readyz` 200 (fails past `timeout_s`)."""
        took: dict[str, float] = {}
        for name in names or tuple(self.replicas):
            replica = self.replicas[name]

            async def answers(replica: Replica = replica, name: str = name) -> bool:
                assert replica.process.poll() is None, f"{name} exited with {replica.process.returncode}"
                try:
                    async with httpx.AsyncClient(base_url=replica.url, timeout=2) as c:
                        return (await c.get("/readyz")).status_code == 200
                except httpx.HTTPError:
                    return False

            await eventually(answers, timeout_s=timeout_s, what=f"{name} ready again")
            took[name] = round(time.monotonic() - since, 1)
        return took

    async def metrics(self, name: str) -> str:
        async with self.replicas[name].client("viewer") as c:
            return (await c.get("/metrics")).text

    async def caught_up(self, name: str, group: str, topic: str, timeout_s: float = 120.0) -> None:
        """Until `name` reports its group's lag on `topic` as zero."""

        async def zero_lag() -> bool:
            text = await self.metrics(name)
            head = f'kuaijing_consumer_lag{{group="{group}",topic="{topic}"}}'
            return head in text and metric(text, "kuaijing_consumer_lag", group=group, topic=topic) == 0

        await eventually(zero_lag, timeout_s=timeout_s, what=f"{name} caught up on {topic}")

    async def fresh_database(self) -> str:
        """A new, migrated database in the stage's cluster: what "a replay from an empty database" replays into."""
        return await fresh_database(self.infra.database, "replay")


def new_groups() -> dict[str, str]:
    tag = uuid.uuid4().hex[:6]
    return {kind: f"fault-{kind}-{tag}" for kind in ("raw", "history", "analytics")}
