"""The dashboard as a command centre's wall screen shows it: rendered by headless Chromium, with data drawn."""

from __future__ import annotations

import asyncio
import os
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import pytest
from PIL import Image

from services.analytics.dashboard import P50_COLOUR, TARGET_COLOUR
from shared.contract.schemas import CallEventKind, CallEventMessage, EventSource
from shared.settings import CommonSettings
from tests.conftest import TOKENS, RunningService
from tests.harness import eventually
from tests.integration.test_analytics import publish

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")


def rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def pixels_near(image: Image.Image, colour: tuple[int, int, int], tolerance: int = 12) -> int:
    counted: list[tuple[int, tuple[int, ...]]] = image.getcolors(maxcolors=1 << 24) or []  # type: ignore[assignment]
    return sum(
        count
        for count, pixel in counted
        if all(abs(int(c) - t) <= tolerance for c, t in zip(pixel[:3], colour, strict=True))
    )


async def screenshot(url: str, path: Path, profile: Path) -> None:
    browser = await asyncio.create_subprocess_exec(
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        f"--screenshot={path}",
        "--window-size=1280,1000",
        "--hide-scrollbars",
        url,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(browser.communicate(), timeout=90)
    assert await asyncio.to_thread(os.path.exists, path), (
        f"chromium wrote no screenshot: {stderr.decode(errors='replace')[-2000:]}"
    )


async def test_the_dashboard_draws_response_times_against_the_targets(
    settings: CommonSettings, analytics: RunningService, db: asyncpg.Connection, tmp_path: Path
) -> None:
    assert os.access(CHROMIUM, os.X_OK), "Debian's chromium is installed by deploy/bootstrap.sh"
    tag = uuid.uuid4().hex[:6]
    received = datetime.now(UTC) - timedelta(hours=1)
    events = []
    for i, response_s in enumerate([45, 70, 160, 240, 420]):
        call_id, platform = f"D-{tag}-{i}", f"Wall-{tag}"
        common = {
            "call_id": call_id,
            "lat": 27.2,
            "lon": 111.4,
            "zone_class": "central_urban",
            "target_s": 180,
            "category": "x",
            "priority": 1,
        }
        events += [
            CallEventMessage(event=CallEventKind.CREATED, ts=received, **common),
            CallEventMessage(
                event=CallEventKind.ASSIGNED,
                ts=received + timedelta(seconds=10),
                unit_id="U",
                platform_id=platform,
                source=EventSource.CONSOLE,
                **common,
            ),
            CallEventMessage(
                event=CallEventKind.ON_SCENE,
                ts=received + timedelta(seconds=response_s),
                unit_id="U",
                platform_id=platform,
                source=EventSource.GPS,
                **common,
            ),
        ]
    await publish(settings, events)

    async def stored() -> bool:
        return bool(await db.fetchval("SELECT count(*) FROM call_facts WHERE call_id LIKE $1", f"D-{tag}-%") == 5)

    await eventually(stored, timeout_s=30, what="the calls in analytics")

    url = f"{analytics.url}/?token={TOKENS['viewer']}"
    async with httpx.AsyncClient() as client:
        page = await client.get(url)
        assert page.status_code == 200
        assert f"Wall-{tag}" in page.text
        assert 'http-equiv="refresh"' in page.text
        assert (await client.get(f"{analytics.url}/")).status_code == 401

    shot = tmp_path / "dashboard.png"
    await screenshot(url, shot, tmp_path / "profile")
    image = Image.open(shot).convert("RGB")
    image.save(os.environ.get("KUAIJING_DASHBOARD_SHOT", os.devnull), format="PNG")
    assert image.size == (1280, 1000)
    assert pixels_near(image, rgb(P50_COLOUR)) > 500, "no p50 bars drawn"
    assert pixels_near(image, rgb(TARGET_COLOUR)) > 50, "no target lines drawn"
