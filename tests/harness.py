"""Helpers the integration and end-to-end tests share: free ports, waiting, and reading a topic's new records."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, TypeVar

import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from shared.contract.topics import Topic
from shared.infra.embedded.ports import reserve_port
from shared.infra.postgres import connect, migrate
from shared.settings import CommonSettings

T = TypeVar("T")


def free_port() -> int:
    return reserve_port()


def free_port_pair() -> int:
    """A port whose successor is free too, both reserved: the embedded Kafka's broker and controller ports."""
    return reserve_port(pair=True)


async def eventually(probe: Callable[[], Awaitable[T | None]], *, timeout_s: float = 20.0, what: str = "") -> T:
    """Poll `probe` until it returns something truthy; fail with `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    last: T | None = None
    while time.monotonic() < deadline:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what or probe} (last: {last!r})")


class TopicTail:
    """Reads only what arrives on a topic after the tail was opened (positions fixed on enter)."""

    def __init__(self, bootstrap: str, topic: Topic[Any]) -> None:
        self._consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
        self._topic = topic
        self.records: list[tuple[bytes | None, dict[str, Any], dict[str, bytes]]] = []

    async def __aenter__(self) -> TopicTail:
        try:
            await self._consumer.start()
            tps = [TopicPartition(self._topic.name, p) for p in range(self._topic.partitions)]
            self._consumer.assign(tps)
            await self._consumer.seek_to_end(*tps)
            for tp in tps:
                await self._consumer.position(tp)
        except BaseException:
            await self._consumer.stop()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._consumer.stop()

    async def collect(
        self, predicate: Callable[[dict[str, Any]], bool], count: int, *, timeout_s: float = 20.0
    ) -> list[dict[str, Any]]:
        """The values of the first `count` new records matching `predicate`, waiting up to `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            matched = [value for _, value, _ in self.records if predicate(value)]
            if len(matched) >= count:
                return matched
            batches = await self._consumer.getmany(timeout_ms=200)
            for records in batches.values():
                for r in records:
                    self.records.append((r.key, orjson.loads(r.value or b"null"), dict(r.headers or ())))
        matched = [value for _, value, _ in self.records if predicate(value)]
        raise AssertionError(f"{len(matched)} of {count} expected records on {self._topic.name} after {timeout_s} s")

    def keys_of(self, predicate: Callable[[dict[str, Any]], bool]) -> list[bytes | None]:
        return [key for key, value, _ in self.records if predicate(value)]


async def group_caught_up(bootstrap: str, group: str, topic: Topic[Any], timeout_s: float = 30.0) -> None:
    """Wait until `group` has committed everything now on `topic`."""
    from aiokafka.admin import AIOKafkaAdminClient

    probe = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    try:
        await probe.start()
        partitions = [TopicPartition(topic.name, p) for p in range(topic.partitions)]
        ends = await probe.end_offsets(partitions)
    finally:
        await probe.stop()
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        await admin.start()

        async def committed_all() -> bool:
            offsets = await admin.list_consumer_group_offsets(group)
            return all(offsets.get(tp) is not None and offsets[tp].offset >= end for tp, end in ends.items() if end)

        await eventually(committed_all, timeout_s=timeout_s, what=f"group {group} to catch up on {topic.name}")
    finally:
        await admin.close()


def kuaijing_variables(*settings: type[CommonSettings]) -> set[str]:
    """Every environment variable these settings classes read (`KUAIJING_<FIELD>`, or a field's own alias)."""
    names = set()
    for cls in settings:
        for name, field in cls.model_fields.items():
            alias = field.validation_alias
            names.add(alias if isinstance(alias, str) else f"KUAIJING_{name.upper()}")
    return names


async def fresh_database(cluster_url: str, prefix: str = "fresh") -> str:
    """A new, migrated database in the cluster `cluster_url` points at: for a test that must see only its own rows."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    conn: asyncpg.Connection = await connect(cluster_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    url = cluster_url.rsplit("/", 1)[0] + f"/{name}"
    await migrate(url)
    return url
