"""Records from many concurrent senders gathered into one open batch per partition and handed to Kafka whole.

aiokafka's `send` gives every record a future of its own and resolves them one by one when the broker acknowledges:
with a thousand terminals each sending a few records at a time, that bookkeeping was a third of the gateway's time.
Here a record costs an append to its partition's open batch; a batch has one future, shared by the records in it.
One flusher per partition hands the batches to the producer in the order they were opened, and the producer is
idempotent, so a key's records keep their order, exactly as with `send`. The partition is the one `send` would
choose (aiokafka's default partitioner, murmur2 of the key), so both paths put a unit's records in the same place.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner

from shared.errors import UnavailableError

_KEYS_CACHED = 200_000


@dataclass(slots=True)
class _Batch:
    builder: Any
    """aiokafka's BatchBuilder, still open for appends until its flusher takes it."""
    delivered: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class BatchPublisher:
    """The `shared.infra.kafka.Producer` slice, over an AIOKafkaProducer: `send` returns once the record is in a
    batch, and its future resolves when the broker acknowledged that batch (acks=all), or raises if it was not
    delivered."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self._producer = producer
        self._partitioner = DefaultPartitioner()
        self._partitions: dict[str, list[int]] = {}
        self._partition_of: dict[tuple[str, bytes], int] = {}
        self._batches: dict[tuple[str, int], deque[_Batch]] = {}
        self._flushers: dict[tuple[str, int], asyncio.Task[None]] = {}

    async def send(self, topic: str, value: bytes, key: bytes | None = None) -> asyncio.Future[None]:
        """The future returned is the batch's, shared by every sender whose records are in it: wait on it (the
        intake uses `asyncio.wait`), never cancel it, or the others lose their acknowledgement."""
        if key is None:
            raise ValueError("every record Kuaijing publishes has a key")
        partition = self._partition_of.get((topic, key))
        if partition is None:  # a coroutine only for a key not seen yet: one per record was a tenth of this call
            try:
                partition = await self._partition(topic, key)
            except KafkaError as e:
                raise _unavailable(e) from e
        tp = (topic, partition)
        batches = self._batches.get(tp)
        if batches is None:
            batches = self._batches[tp] = deque()
        if not batches or batches[-1].builder.append(key=key, value=value, timestamp=None) is None:
            batch = _Batch(self._producer.create_batch())
            if batch.builder.append(key=key, value=value, timestamp=None) is None:
                raise ValueError(f"a record of {len(value)} bytes does not fit in a batch")
            batches.append(batch)
        if tp not in self._flushers:
            self._flushers[tp] = asyncio.create_task(self._flush(tp))
        return batches[-1].delivered

    async def drain(self) -> None:
        """Hand every open batch to the producer; its own `stop` then waits for the acknowledgements."""
        while self._flushers:
            await asyncio.gather(*self._flushers.values(), return_exceptions=True)

    async def _partition(self, topic: str, key: bytes) -> int:
        """For a key `send` found no partition cached for (murmur2 in Python is a few µs); cached for as many keys
        as a fleet has. A topic's partition count is read once, as the contract fixes it."""
        partitions = self._partitions.get(topic)
        if partitions is None:
            partitions = self._partitions[topic] = sorted(await self._producer.partitions_for(topic))
        partition: int = self._partitioner(key, partitions, partitions)
        if len(self._partition_of) < _KEYS_CACHED:  # dead letters' keys come from untrusted input
            self._partition_of[(topic, key)] = partition
        return partition

    async def _flush(self, tp: tuple[str, int]) -> None:
        """Runs once the senders of this turn of the event loop have appended; batches opened while one is handed
        over are taken in turn, so a busy partition sends fewer, fuller batches."""
        topic, partition = tp
        batches = self._batches[tp]
        try:
            while batches:
                batch = batches.popleft()
                try:
                    acknowledged = await self._producer.send_batch(batch.builder, topic, partition=partition)
                except KafkaError as e:
                    batch.delivered.set_exception(_unavailable(e))
                    continue
                acknowledged.add_done_callback(lambda done, batch=batch: _settle(batch.delivered, done))
        finally:
            del self._flushers[tp]


def _settle(delivered: asyncio.Future[None], acknowledged: asyncio.Future[Any]) -> None:
    if acknowledged.cancelled():
        delivered.cancel()
    elif (error := acknowledged.exception()) is not None:
        delivered.set_exception(_unavailable(error) if isinstance(error, KafkaError) else error)
    else:
        delivered.set_result(None)


def _unavailable(error: KafkaError) -> UnavailableError:
    """aiokafka's errors stop here: callers see the project's own, with the broker's reason."""
    unavailable = UnavailableError(f"not acknowledged ({type(error).__name__}); retry", field="kafka")
    unavailable.__cause__ = error
    return unavailable


@asynccontextmanager
async def batch_publisher(producer: AIOKafkaProducer) -> AsyncIterator[BatchPublisher]:
    """A publisher whose open batches are handed to the producer before the block ends (and the producer stops)."""
    publisher = BatchPublisher(producer)
    try:
        yield publisher
    finally:
        await publisher.drain()
