import asyncio

from shared.infra.supervision import Supervisor


async def test_a_failing_loop_is_restarted_and_a_stuck_one_does_not_block_shutdown() -> None:
    runs = 0
    finished = asyncio.Event()
    release = asyncio.Event()

    async def flaky() -> None:
        nonlocal runs
        runs += 1
        if runs < 3:
            raise RuntimeError("broker went away")
        finished.set()

    async def stuck() -> None:
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                await release.wait()  # ignores the cancellation, as a client stuck in a call might
                return

    supervisor = Supervisor()
    supervisor.spawn("flaky", flaky)
    supervisor.spawn("stuck", stuck)
    await asyncio.wait_for(finished.wait(), timeout=10)
    assert runs == 3
    await asyncio.wait_for(supervisor.aclose(timeout_s=0.2), timeout=5)
    release.set()
    await asyncio.sleep(0.01)
