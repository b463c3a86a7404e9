"""`running`: a Kafka client is stopped however its block ends, also when it never finished starting. A supervised
consumer loop restarts after every failed start and a service may shut down while a consumer joins its group; a
client left unstopped each time keeps its connections open and warns when collected."""

from __future__ import annotations

import asyncio
import gc
import warnings

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaConnectionError

from shared.infra.kafka import running
from tests.harness import free_port


class Client:
    def __init__(self, start: asyncio.Future[None]) -> None:
        self._start = start
        self.stopped = False

    async def start(self) -> None:
        await self._start

    async def stop(self) -> None:
        self.stopped = True


async def test_a_client_whose_start_fails_is_stopped() -> None:
    failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    failed.set_exception(ConnectionError("no broker"))
    client = Client(failed)
    with pytest.raises(ConnectionError):
        async with running(client):
            pytest.fail("the block ran without a started client")
    assert client.stopped


async def test_a_client_cancelled_while_starting_is_stopped() -> None:
    client = Client(asyncio.get_running_loop().create_future())

    async def use() -> None:
        async with running(client):
            pytest.fail("the block ran without a started client")

    task = asyncio.create_task(use())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert client.stopped


async def test_a_client_is_stopped_when_its_block_raises() -> None:
    started: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    started.set_result(None)
    client = Client(started)

    async def use() -> None:
        async with running(client) as held:
            assert held is client
            assert not client.stopped
            raise RuntimeError("the block failed")

    with pytest.raises(RuntimeError, match="the block failed"):
        await use()
    assert client.stopped


async def test_an_aiokafka_consumer_that_cannot_reach_a_broker_leaves_nothing_open() -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers=f"127.0.0.1:{free_port()}", request_timeout_ms=2_000)
    with pytest.raises(KafkaConnectionError):
        async with running(consumer):
            pytest.fail("started without a broker")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del consumer
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]
