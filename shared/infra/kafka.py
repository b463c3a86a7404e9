"""Kafka clients as the project configures them: idempotent acks=all producers, manually committed consumers.

Every service gets its producer and consumers here, so delivery guarantees are decided once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from aiokafka.helpers import create_ssl_context

from shared.contract.topics import ALL_TOPICS, Topic
from shared.errors import ConfigurationError, InfrastructureError

log = logging.getLogger(__name__)

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


@dataclass(frozen=True, slots=True)
class KafkaClient:
    """Where the brokers are and how a client proves who it is: TLS (a CA to trust, optionally a client
    certificate) and SASL (SCRAM or PLAIN). Every producer, consumer and admin client of the project is made from
    one of these; a bare `host:port` string means PLAINTEXT."""

    bootstrap: str
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism = "SCRAM-SHA-512"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None

    def __post_init__(self) -> None:
        if self.security_protocol.startswith("SASL_") and not (self.username and self.password):
            raise ConfigurationError(
                f"Kafka {self.security_protocol} needs KUAIJING_KAFKA_SASL_USERNAME and KUAIJING_KAFKA_SASL_PASSWORD"
            )
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ConfigurationError("KUAIJING_KAFKA_SSL_CERTFILE and KUAIJING_KAFKA_SSL_KEYFILE go together")

    def options(self) -> dict[str, Any]:
        """Keyword arguments for aiokafka's clients."""
        options: dict[str, Any] = {"bootstrap_servers": self.bootstrap, "security_protocol": self.security_protocol}
        if self.security_protocol.endswith("SSL"):
            options["ssl_context"] = create_ssl_context(
                cafile=str(self.ssl_cafile) if self.ssl_cafile else None,
                certfile=str(self.ssl_certfile) if self.ssl_certfile else None,
                keyfile=str(self.ssl_keyfile) if self.ssl_keyfile else None,
            )
        if self.security_protocol.startswith("SASL_"):
            options |= {
                "sasl_mechanism": self.sasl_mechanism,
                "sasl_plain_username": self.username,
                "sasl_plain_password": self.password,
            }
        return options


Kafka = KafkaClient | str


def client_options(kafka: Kafka) -> dict[str, Any]:
    return (kafka if isinstance(kafka, KafkaClient) else KafkaClient(kafka)).options()


def bootstrap_of(kafka: Kafka) -> str:
    return kafka.bootstrap if isinstance(kafka, KafkaClient) else kafka


def make_producer(kafka: Kafka, *, client_id: str = "kuaijing") -> AIOKafkaProducer:
    """acks=all with idempotence: a retried send never duplicates and never reorders a unit's records."""
    return AIOKafkaProducer(
        **client_options(kafka),
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        max_batch_size=256 * 1024,
        request_timeout_ms=30_000,
    )


def make_consumer(
    kafka: Kafka, *topics: Topic[Any], group_id: str, client_id: str = "kuaijing", max_poll_records: int = 5_000
) -> AIOKafkaConsumer:
    """Manual commits only: callers commit after what a batch produced is durable (at-least-once)."""
    return AIOKafkaConsumer(
        *(t.name for t in topics),
        **client_options(kafka),
        client_id=client_id,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=max_poll_records,
        fetch_max_bytes=16 * 1024 * 1024,
        max_partition_fetch_bytes=4 * 1024 * 1024,
        isolation_level="read_committed",
    )


def make_admin(kafka: Kafka, *, client_id: str, request_timeout_ms: int = 40_000) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(**client_options(kafka), client_id=client_id, request_timeout_ms=request_timeout_ms)


class _Startable(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...


C = TypeVar("C", bound=_Startable)


@asynccontextmanager
async def running(client: C) -> AsyncIterator[C]:
    """`client` started, and stopped however the block ends, also when `start` fails or is cancelled half-way
    (a supervised loop restarting, a service shutting down while a consumer joins its group). aiokafka's own
    `async with` stops only a client that started: one that did not keeps its connections and warns when collected."""
    try:
        await client.start()
        yield client
    finally:
        await client.stop()


@asynccontextmanager
async def started_producer(kafka: Kafka, *, client_id: str = "kuaijing") -> AsyncIterator[AIOKafkaProducer]:
    producer = make_producer(kafka, client_id=client_id)
    try:
        try:
            await producer.start()
        except KafkaError as e:
            raise InfrastructureError(f"cannot reach Kafka at {bootstrap_of(kafka)}: {e!r}") from e
        yield producer
    finally:
        await producer.stop()


@asynccontextmanager
async def started_consumer(
    kafka: Kafka, *topics: Topic[Any], group_id: str, client_id: str = "kuaijing"
) -> AsyncIterator[AIOKafkaConsumer]:
    """A group consumer from `make_consumer`, started, and stopped however the block ends."""
    async with running(make_consumer(kafka, *topics, group_id=group_id, client_id=client_id)) as consumer:
        yield consumer


async def ensure_topics(kafka: Kafka, topics: Iterable[Topic[Any]] = ALL_TOPICS) -> list[str]:
    """Create the contract's topics that do not exist yet; returns the names it created."""
    admin = make_admin(kafka, client_id="kuaijing-admin")
    try:
        await admin.start()
        existing = set(await admin.list_topics())
        missing = [t for t in topics if t.name not in existing]
        created: list[str] = []
        for topic in missing:
            try:
                await admin.create_topics(
                    [NewTopic(topic.name, topic.partitions, 1, topic_configs=topic.config())],
                    timeout_ms=30_000,
                )
                created.append(topic.name)
            except TopicAlreadyExistsError:
                continue
        if created:
            await _wait_for_topics(admin, created)
            log.info("created Kafka topics %s", ", ".join(created))
        await _wait_for_group_coordinator(admin)
        return created
    except KafkaError as e:
        raise InfrastructureError(f"cannot create topics on {bootstrap_of(kafka)}: {e!r}") from e
    finally:
        await admin.close()


async def _wait_for_topics(admin: AIOKafkaAdminClient, names: list[str], timeout_s: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while asyncio.get_running_loop().time() < deadline:
        if set(names) <= set(await admin.list_topics()):
            return
        await asyncio.sleep(0.1)
    raise InfrastructureError(f"topics {names} did not appear within {timeout_s} s")


async def _wait_for_group_coordinator(admin: AIOKafkaAdminClient, timeout_s: float = 30.0) -> None:
    """A fresh broker creates its offsets topic on the first coordinator lookup and answers "not available" until
    it exists; waiting here spares every service's first group join a burst of aiokafka errors in the log."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        try:
            await admin.find_coordinator("kuaijing")
            return
        except KafkaError:
            if asyncio.get_running_loop().time() >= deadline:
                raise
            await asyncio.sleep(0.2)


async def describe_cluster(kafka: Kafka, timeout_s: float = 10.0) -> dict[str, object]:
    """A real metadata request: the broker answers only once it is unfenced and serving."""
    admin = make_admin(kafka, client_id="kuaijing-probe", request_timeout_ms=5_000)
    try:
        async with asyncio.timeout(timeout_s):
            await admin.start()
            info: dict[str, object] = await admin.describe_cluster()
            return info
    finally:
        await admin.close()


async def consumer_lag(consumer: AIOKafkaConsumer) -> dict[str, int]:
    """Records between each assigned partition's position and its high watermark, summed per topic."""
    per_topic: dict[str, int] = {}
    for tp in consumer.assignment():
        highwater = consumer.highwater(tp)
        if highwater is None:
            continue
        behind = max(0, highwater - await consumer.position(tp))
        per_topic[tp.topic] = per_topic.get(tp.topic, 0) + behind
    return per_topic
