import asyncio
from collections.abc import Callable
from functools import partial
from typing import Any

from services.dispatcher.events import EventHub, is_closing


async def test_positions_are_thinned_to_one_per_unit_per_second() -> None:
    clock = [100.0]
    hub = EventHub(clock=lambda: clock[0])
    async with hub.subscribe() as queue:
        hub.position("u1", lambda: {"n": 1})
        hub.position("u1", lambda: {"n": 2})
        hub.position("u2", lambda: {"n": 3})
        clock[0] += 1.0
        hub.position("u1", lambda: {"n": 4})
        hub.publish("status", lambda: {"n": 5})
        received = [queue.get_nowait().data["n"] for _ in range(queue.qsize())]
    assert received == [1, 3, 4, 5]


async def test_a_subscriber_that_cannot_keep_up_is_closed_not_waited_for() -> None:
    hub = EventHub(queue_size=3)
    async with hub.subscribe() as slow:
        for n in range(5):
            hub.publish("status", partial(dict, n=n))
        assert hub.subscribers == 0
        events = [slow.get_nowait() for _ in range(slow.qsize())]
    assert is_closing(events[-1])
    await asyncio.sleep(0)


async def test_an_event_s_data_is_made_only_for_a_listener_and_a_named_event_only_once() -> None:
    hub = EventHub()
    made: list[int] = []

    def data(n: int) -> Callable[[], dict[str, Any]]:
        def make() -> dict[str, Any]:
            made.append(n)
            return {"n": n}

        return make

    hub.publish("call", data(1), once="call C-1 created")
    async with hub.subscribe() as queue:
        hub.publish("call", data(2), once="call C-1 created")
        hub.publish("call", data(3), once="call C-2 created")
        hub.publish("call", data(4), once="call C-2 created")
        received = [queue.get_nowait().data["n"] for _ in range(queue.qsize())]
    assert received == [3]
    assert made == [3], "heard with no listener, the first was never made; the named repeats were not made either"
