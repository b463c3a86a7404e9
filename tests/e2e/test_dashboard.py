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
from playwright.async_api import async_playwright

from services.analytics.dashboard import P50_COLOUR, TARGET_COLOUR
from shared.contract.registry import Platform, PlatformKind, RegistryImport
from shared.contract.schemas import CallEventKind, CallEventMessage, EventSource
from shared.infra.registry_store import import_registry
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


async def calls_of_a_platform(settings: CommonSettings, db: asyncpg.Connection, tag: str) -> None:
    """Five calls reached in 45 s to 7 min by platform `Wall-<tag>`, in analytics."""
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


async def shown_on_the_dashboard(analytics: RunningService, text: str) -> str:
    """The page once it shows `text`: screens share a snapshot, taken again when older than its maximum age."""
    async with httpx.AsyncClient() as client:

        async def shown() -> str | None:
            page = await client.get(f"{analytics.url}/", params={"token": TOKENS["viewer"]})
            assert page.status_code == 200, page.text
            return page.text if text in page.text else None

        return await eventually(shown, what=f"{text!r} on the dashboard")


async def test_the_dashboard_draws_response_times_against_the_targets(
    settings: CommonSettings, analytics: RunningService, db: asyncpg.Connection, tmp_path: Path
) -> None:
    assert os.access(CHROMIUM, os.X_OK), "Debian's chromium is installed by deploy/bootstrap.sh"
    tag = uuid.uuid4().hex[:6]
    await calls_of_a_platform(settings, db, tag)
    url = f"{analytics.url}/?token={TOKENS['viewer']}"
    page = await shown_on_the_dashboard(analytics, f"Wall-{tag}")
    assert 'http-equiv="refresh"' in page
    async with httpx.AsyncClient() as client:
        assert (await client.get(f"{analytics.url}/")).status_code == 401

    shot = tmp_path / "dashboard.png"
    await screenshot(url, shot, tmp_path / "profile")
    image = Image.open(shot).convert("RGB")
    image.save(os.environ.get("KUAIJING_DASHBOARD_SHOT", os.devnull), format="PNG")
    assert image.size == (1280, 1000)
    assert pixels_near(image, rgb(P50_COLOUR)) > 500, "no p50 bars drawn"
    assert pixels_near(image, rgb(TARGET_COLOUR)) > 50, "no target lines drawn"


async def test_at_1600x1000_labels_stay_apart_and_whole_and_chinese_names_render(
    settings: CommonSettings, analytics: RunningService, db: asyncpg.Connection
) -> None:
    """What a wall screen showed before: the 1- and 3-minute labels overlapping, "100.0% with" cut off, Chinese
    as empty boxes (no CJK font), and platforms by id only."""
    tag = uuid.uuid4().hex[:6]
    name = f"邵阳快警平台 {tag}"
    await import_registry(db, RegistryImport(platforms=[
        Platform(id=f"Wall-{tag}", name=name, kind=PlatformKind.FAST_RESPONSE, lat=27.2, lon=111.4)
    ]))  # fmt: skip
    await calls_of_a_platform(settings, db, tag)
    await shown_on_the_dashboard(analytics, name)
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        page = await browser.new_page(viewport={"width": 1600, "height": 1000})
        await page.goto(f"{analytics.url}/?token={TOKENS['viewer']}")
        ARTEFACTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(ARTEFACTS / "dashboard-1600x1000.png"), full_page=True)
        boxes = await page.evaluate(BOXES)
        renders_chinese = await page.evaluate(NOT_TOFU, "快警")
        await browser.close()
    targets = boxes["targets"]
    assert len(targets) == 4
    for i, a in enumerate(targets):
        for b in targets[i + 1 :]:
            assert not overlap(a, b), f"target labels overlap: {a} {b}"
        for line in boxes["lines"]:
            if line["x"] > a["right"] or line["x"] < a["left"] or line["top"] > a["bottom"]:
                continue
            assert line["top"] >= a["bottom"], f"a target line crosses the label {a}"
    for text in boxes["figures"]:
        assert text["right"] <= text["svg_right"] + 0.5, f"cut off: {text}"
    assert name in boxes["platforms"], "the platform's name, not only its id"
    assert renders_chinese, "Chinese renders as empty boxes: no CJK font"


ARTEFACTS = Path(__file__).resolve().parents[2] / "build" / "test-artifacts"

BOXES = """() => {
  const box = (e) => { const r = e.getBoundingClientRect();
    return {left: r.left, right: r.right, top: r.top, bottom: r.bottom, text: e.textContent}; };
  const chart = document.querySelector("#response-chart");
  const figures = [...document.querySelectorAll("text.figures, text.share")].map((e) =>
    ({...box(e), svg_right: e.ownerSVGElement.getBoundingClientRect().right}));
  const lines = [...chart.querySelectorAll("line")].map((e) => { const r = e.getBoundingClientRect();
    return {x: r.left + r.width / 2, top: r.top}; });
  return {targets: [...chart.querySelectorAll("text.target")].map(box), lines, figures,
          platforms: [...chart.querySelectorAll("text.platform")].map((e) => e.lastChild.textContent)};
}"""

NOT_TOFU = """(text) => {
  // The glyphs of `text` in the page's font, against a code point no font has (drawn as the empty box).
  const draw = (s) => { const c = document.createElement("canvas"); c.width = 80; c.height = 40;
    const g = c.getContext("2d"); g.font = `32px ${getComputedStyle(document.body).fontFamily}`;
    g.fillText(s, 0, 32); return g.getImageData(0, 0, 80, 40).data.join(","); };
  return draw(text[0]) !== draw("\\u{10FFFD}") && draw(text[0]) !== draw(text[1]);
}"""


def overlap(a: dict[str, float], b: dict[str, float]) -> bool:
    return a["left"] < b["right"] and b["left"] < a["right"] and a["top"] < b["bottom"] and b["top"] < a["bottom"]
