"""`kuaijing health`, the image's health check: 0 when the service of this host answers /healthz, 1 otherwise."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest

from tests.conftest import RunningService
from tests.harness import free_port

pytestmark = pytest.mark.integration


def health(**ports: int) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUAIJING_")}
    env |= {f"KUAIJING_{name.upper()}_PORT": str(port) for name, port in ports.items()}
    return subprocess.run([sys.executable, "-m", "services.cli", "health"], env=env, capture_output=True, text=True)


async def test_health_answers_0_for_the_running_service_and_1_when_none_answers(ingest: RunningService) -> None:
    nothing = {"ingest": free_port(), "dispatcher": free_port(), "analytics": free_port()}
    # In a thread: the service under test answers from this test's event loop.
    found = await asyncio.to_thread(health, **(nothing | {"ingest": ingest.port}))
    assert (found.returncode, found.stdout.strip()) == (0, "ingest healthy")
    missing = await asyncio.to_thread(health, **nothing)
    assert missing.returncode == 1
    assert "no Kuaijing service answers /healthz" in missing.stderr
