import asyncio

from services.dispatcher.events import EventHub, is_closing


async def test_positions_are_thinned_to_one_per_unit_per_second() -> None:
    clock = [100.0]
    hub = EventHub(clock=lambda: clock[0])
    async with hub.subscribe() as queue:
        hub.position("u1", {"n": 1})
        hub.position("u1", {"n": 2})
        hub.position("u2", {"n": 3})
        clock[0] += 1.0
        hub.position("u1", {"n": 4})
        hub.publish("status", {"n": 5})
        received = [queue.get_nowait().data["n"] for _ in range(queue.qsize())]
    assert received == [1, 3, 4, 5]


async def test_a_subscriber_that_cannot_keep_up_is_closed_not_waited_for() -> None:
    hub = EventHub(queue_size=3)
    async with hub.subscribe() as slow:
        for n in range(5):
            hub.publish("status", {"n": n})
        assert hub.subscribers == 0
        events = [slow.get_nowait() for _ in range(slow.qsize())]
    assert is_closing(events[-1])
    await asyncio.sleep(0)
