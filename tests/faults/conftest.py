"""The fault tests' stage: its own broker and database, the services as processes (ingest's history writer in a
process of its own, as a deployment may run it, so that it can be killed alone)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from collections.abc import Iterator

import pytest

from shared.errors import KuaijingError
from shared.infra.embedded.kafka import EmbeddedKafka
from shared.infra.embedded.postgres import EmbeddedPostgres
from shared.infra.kafka import ensure_topics
from shared.infra.postgres import migrate
from tests.conftest import Infra
from tests.faults.stage import Stage, new_groups
from tests.harness import free_port
from tests.replicas import running

HISTORY_ONLY = {
    "KUAIJING_JT808_ENABLED": "false",
    "KUAIJING_RAW_CONSUMER_ENABLED": "false",
    "KUAIJING_HISTORY_WRITER_ENABLED": "true",
}


@pytest.fixture(scope="package")
def stage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stage]:
    data_dir = tmp_path_factory.mktemp("kuaijing-faults")
    kafka = EmbeddedKafka(data_dir, port=free_port(), controller_port=free_port())
    postgres = EmbeddedPostgres(data_dir, port=free_port())
    try:
        postgres.start()
        kafka.start()
        asyncio.run(ensure_topics(kafka.bootstrap))
        asyncio.run(migrate(postgres.url))
    except (KuaijingError, OSError) as e:
        kafka.stop()
        postgres.stop()
        if os.environ.get("CI") == "true":
            pytest.fail(f"Kafka/PostgreSQL could not be started for the fault tests: {e}")
        pytest.skip(f"Kafka/PostgreSQL could not be started: {e}")
    stage = Stage(Infra(kafka=kafka.bootstrap, database=postgres.url, data_dir=data_dir), kafka, postgres)
    stage.groups = new_groups()
    stage.start("ingest", env={"KUAIJING_HISTORY_WRITER_ENABLED": "false"})
    stage.start("ingest-history", env=HISTORY_ONLY)
    stage.start("dispatcher")
    stage.start("analytics")
    try:
        with running(list(stage.replicas.values())):
            yield stage
    finally:
        for replica in stage.replicas.values():
            if replica.process.poll() is None:
                replica.process.send_signal(signal.SIGTERM)
                try:
                    replica.process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    replica.process.kill()
        kafka.stop()
        postgres.stop()
