"""Kafka over SASL_SSL with SCRAM-SHA-512, set only through `KUAIJING_KAFKA_*` settings, against an embedded broker
started with such a listener (a self-signed certificate, a SCRAM user created when its log dir is formatted):
ingest publishes and its history writer consumes through it, and a wrong password keeps the service from ever
reporting ready, with a log line that says why."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import secrets
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from subprocess import PIPE, STDOUT

import asyncpg
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaConnectionError

from shared.contract.topics import POSITIONS
from shared.infra.embedded.kafka import EmbeddedKafka
from shared.infra.kafka import KafkaClient, describe_cluster
from tests.conftest import Infra, register_fleet
from tests.harness import eventually, free_port
from tests.replicas import Replica, running, start_replica

pytestmark = pytest.mark.integration

USER = "kuaijing-ingest"


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EmbeddedKafka, str]]:
    password = secrets.token_urlsafe(16)
    kafka = EmbeddedKafka(
        tmp_path_factory.mktemp("kafka-scram"),
        port=free_port(),
        controller_port=free_port(),
        secure_port=free_port(),
        scram_user=(USER, password),
    )
    kafka.start()
    try:
        yield kafka, password
    finally:
        kafka.stop()


def security(kafka: EmbeddedKafka, password: str) -> dict[str, str]:
    return {
        "KUAIJING_KAFKA_BOOTSTRAP": kafka.secure_bootstrap,
        "KUAIJING_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KUAIJING_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "KUAIJING_KAFKA_SASL_USERNAME": USER,
        "KUAIJING_KAFKA_SASL_PASSWORD": password,
        "KUAIJING_KAFKA_SSL_CAFILE": str(kafka.tls_ca),
    }


def client(kafka: EmbeddedKafka, password: str) -> KafkaClient:
    return KafkaClient(
        kafka.secure_bootstrap, security_protocol="SASL_SSL", username=USER, password=password, ssl_cafile=kafka.tls_ca
    )


@pytest.fixture(scope="module")
def secured_ingest(infra: Infra, secured: tuple[EmbeddedKafka, str]) -> Iterator[Replica]:
    kafka, password = secured
    tag = uuid.uuid4().hex[:6]
    groups = {"KUAIJING_RAW_GROUP": f"scram-raw-{tag}", "KUAIJING_HISTORY_GROUP": f"scram-history-{tag}"}
    with running([start_replica(infra, "ingest", env=security(kafka, password) | groups)]) as [replica]:
        yield replica


async def test_ingest_publishes_and_stores_through_a_sasl_ssl_scram_listener(
    infra: Infra, secured: tuple[EmbeddedKafka, str], secured_ingest: Replica, db: asyncpg.Connection
) -> None:
    kafka, password = secured
    fleet = await register_fleet(infra.database, units=1)
    unit = fleet.unit_ids[0]
    ts = (datetime.now(UTC) - timedelta(seconds=30)).replace(microsecond=0)
    ping = {"kind": "position", "unit_id": unit, "ts": ts.isoformat(), "lat": 27.24, "lon": 111.47}

    async def accepted() -> bool:
        async with secured_ingest.client("terminal") as c:
            return bool((await c.post("/v1/telemetry", json=ping)).json()["accepted"] == 1)

    await eventually(accepted, timeout_s=30, what="ingest to accept the ping over SASL_SSL")
    consumer = AIOKafkaConsumer(**client(kafka, password).options(), group_id=None, auto_offset_reset="earliest")
    try:
        await consumer.start()
        consumer.assign([TopicPartition(POSITIONS.name, p) for p in range(POSITIONS.partitions)])
        found: list[dict[str, object]] = []
        async with asyncio.timeout(30):
            while not found:
                for batch in (await consumer.getmany(timeout_ms=500)).values():
                    found += [v for r in batch if (v := orjson.loads(r.value or b"{}"))["unit_id"] == unit]
    finally:
        await consumer.stop()
    assert found[0]["lat"] == 27.24

    async def stored() -> bool:
        return bool(await db.fetchval("SELECT count(*) FROM positions WHERE unit_id = $1", unit) == 1)

    await eventually(stored, timeout_s=30, what="the history writer to store the ping read over SASL_SSL")


async def test_a_wrong_password_is_refused_and_the_service_says_so(
    infra: Infra, secured: tuple[EmbeddedKafka, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    kafka, password = secured
    with caplog.at_level(logging.ERROR, logger="aiokafka"), pytest.raises(KafkaConnectionError):
        await describe_cluster(client(kafka, password + "-wrong"), timeout_s=15)
    assert any("SaslAuthenticationFailed" in r.getMessage() for r in caplog.records)
    environment = {k: v for k, v in os.environ.items() if not k.startswith("KUAIJING_")} | security(
        kafka, password + "-wrong"
    ) | {"KUAIJING_DATABASE_URL": infra.database, "KUAIJING_INGEST_PORT": str(free_port()),
         "KUAIJING_JT808_PORT": str(free_port()), "KUAIJING_API_TOKENS": "admin:t"}  # fmt: skip
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.ingest", env=environment, stdout=PIPE, stderr=STDOUT
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=120)
    text = output.decode()
    assert process.returncode != 0, text
    assert re.search(r"cannot (reach Kafka at|create topics on)", text), text
    assert "SaslAuthenticationFailed" in text, text
    assert password not in text
