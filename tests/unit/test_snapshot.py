"""The dashboard's shared snapshot: one computation at a time, readers never wait once there is a snapshot."""

from __future__ import annotations

import asyncio

import pytest

from services.analytics.snapshot import Snapshot


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Computation:
    """Counts its runs; each run waits until the test lets it finish, with a value or an error."""

    def __init__(self) -> None:
        self.runs = 0
        self.release: asyncio.Queue[str | Exception] = asyncio.Queue()

    async def __call__(self) -> str:
        self.runs += 1
        outcome = await self.release.get()
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_readers_before_the_first_snapshot_wait_together_on_one_computation() -> None:
    compute = Computation()
    snapshot = Snapshot(compute, max_age_s=10, timeout_s=60, name="t", clock=Clock())
    readers = [asyncio.create_task(snapshot.get()) for _ in range(5)]
    await settle()
    assert compute.runs == 1
    assert not any(r.done() for r in readers)
    compute.release.put_nowait("first")
    assert await asyncio.gather(*readers) == ["first"] * 5


async def test_a_fresh_snapshot_is_served_without_computing_again() -> None:
    compute, clock = Computation(), Clock()
    snapshot = Snapshot(compute, max_age_s=10, timeout_s=60, name="t", clock=clock)
    compute.release.put_nowait("first")
    assert await snapshot.get() == "first"
    clock.now += 9.9
    assert [await snapshot.get() for _ in range(100)] == ["first"] * 100
    assert compute.runs == 1
    assert snapshot.age_s() == pytest.approx(9.9)


async def test_an_old_snapshot_is_served_at_once_while_one_new_one_is_taken() -> None:
    compute, clock = Computation(), Clock()
    seen: list[float] = []
    snapshot = Snapshot(compute, max_age_s=10, timeout_s=60, name="t", clock=clock, observe=seen.append)
    compute.release.put_nowait("first")
    await snapshot.get()
    clock.now += 10
    assert [await snapshot.get() for _ in range(20)] == ["first"] * 20, "readers never wait once there is one"
    await settle()
    assert compute.runs == 2, "one new computation however many readers found the snapshot old"
    clock.now += 3
    compute.release.put_nowait("second")
    await settle()
    assert await snapshot.get() == "second"
    assert snapshot.age_s() == 3, "its age counts from when it was begun: the instant its figures are exact for"
    assert seen == [0, 3]


async def test_a_failure_before_the_first_snapshot_reaches_its_readers_and_the_next_reader_tries_again() -> None:
    compute = Computation()
    snapshot = Snapshot(compute, max_age_s=10, timeout_s=60, name="t", clock=Clock())
    readers = [asyncio.create_task(snapshot.get()) for _ in range(3)]
    await settle()
    compute.release.put_nowait(ConnectionError("database away"))
    for outcome in await asyncio.gather(*readers, return_exceptions=True):
        assert isinstance(outcome, ConnectionError)
    compute.release.put_nowait("first")
    assert await snapshot.get() == "first"
    assert compute.runs == 2


async def test_a_failed_refresh_keeps_the_old_snapshot_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    compute, clock = Computation(), Clock()
    snapshot = Snapshot(compute, max_age_s=10, timeout_s=60, name="dashboard", clock=clock)
    compute.release.put_nowait("first")
    await snapshot.get()
    clock.now += 11
    compute.release.put_nowait(ConnectionError("database away"))
    assert await snapshot.get() == "first"
    await settle()
    assert "dashboard: taking a new snapshot failed" in caplog.text
    compute.release.put_nowait("second")
    assert await snapshot.get() == "first"
    await settle()
    assert compute.runs == 3
    assert await snapshot.get() == "second"


async def test_a_reader_giving_up_does_not_cancel_the_computation_the_others_wait_on() -> None:
    compute = Computation()
    snapshot = Snapshot(compute, max_age_s=10, timeout_s=60, name="t", clock=Clock())
    impatient, patient = asyncio.create_task(snapshot.get()), asyncio.create_task(snapshot.get())
    await settle()
    impatient.cancel()
    await settle()
    compute.release.put_nowait("first")
    assert await patient == "first"
    assert compute.runs == 1


async def test_closing_cancels_a_computation_under_way() -> None:
    compute = Computation()
    snapshot = Snapshot(compute, max_age_s=10, timeout_s=60, name="t", clock=Clock())
    reader = asyncio.create_task(snapshot.get())
    await settle()
    await snapshot.aclose()
    with pytest.raises(asyncio.CancelledError):
        await reader


async def test_a_computation_that_never_ends_is_abandoned_and_the_next_reader_starts_another() -> None:
    compute = Computation()
    snapshot = Snapshot(compute, max_age_s=10, timeout_s=0.05, name="t", clock=Clock())
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(snapshot.get(), timeout=5)
    compute.release.put_nowait("first")
    assert await asyncio.wait_for(snapshot.get(), timeout=5) == "first"
    assert compute.runs == 2
