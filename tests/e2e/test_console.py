"""The command-centre console in headless Chromium (Debian's, driven by Playwright) against the running services:
the map draws the city's streets and every unit by kind, a call created by a click reaches `kuaijing.calls`, an
assignment and a unit card's status change reach the dispatcher, an overdue call turns red, a viewer sees all and
can change nothing, the feed reconnects by itself. Screenshots go to build/test-artifacts/console/ and are checked
for the colours the command centre expects."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import h3.api.basic_int as h3i
import httpx
import pytest
from PIL import Image
from playwright.async_api import Browser, Page, async_playwright
from playwright.async_api import TimeoutError as PlaywrightTimeout

from shared.contract.registry import Platform, PlatformKind, RegistryImport, Unit, UnitKind, Zone
from shared.contract.topics import CALLS
from shared.infra.postgres import connect
from shared.infra.registry_store import import_registry
from shared.settings import CommonSettings
from tests.conftest import TOKENS, Infra, RunningService
from tests.e2e.test_dashboard import CHROMIUM, pixels_near, rgb
from tests.harness import TopicTail, eventually

pytestmark = pytest.mark.e2e

ARTEFACTS = Path(__file__).resolve().parents[2] / "build" / "test-artifacts" / "console"
KIND_COLOURS = {UnitKind.COMMAND_CAR: "#1e6bff", UnitKind.PATROL_CAR: "#e53935", UnitKind.MOTORCYCLE: "#fdd835"}
OVERDUE = "#ff1744"
HOME = (27.33, 111.58)
"""Far enough from the other tests' units (around 27.24, 111.47) that the nearest ones here are this crew."""
NORTH_ZONE = dict(h3i.cells_to_geo(h3i.grid_disk(h3i.latlng_to_cell(HOME[0] + 0.02, HOME[1], 8), 1)))
"""An urban zone 2 km north of the crew, away from the calls these tests make: the coverage panel's row."""


class Crew:
    def __init__(self, platform_id: str, units: dict[UnitKind, str]) -> None:
        self.platform_id, self.units = platform_id, units


@pytest.fixture(scope="module")
async def crew(infra: Infra, ingest: RunningService, dispatcher: RunningService) -> Crew:
    """A platform with one unit of each kind, reporting fresh fixes a few hundred metres apart."""
    tag = uuid.uuid4().hex[:6]
    platform = Platform(id=f"C-{tag}", name=f"控制台测试平台 {tag}", kind=PlatformKind.FAST_RESPONSE, lat=HOME[0],
                        lon=HOME[1])  # fmt: skip
    units = {kind: f"C-{tag}-{i}" for i, kind in enumerate(KIND_COLOURS)}
    zone = Zone.model_validate({"id": f"Z-{tag}", "class": "other_urban", "geometry": NORTH_ZONE})
    conn = await connect(infra.database)
    try:
        await import_registry(conn, RegistryImport(platforms=[platform], zones=[zone], units=[
            Unit(id=unit_id, platform_id=platform.id, kind=kind, callsign=f"{i}{tag[:3]}")
            for i, (kind, unit_id) in enumerate(units.items())
        ]))  # fmt: skip
    finally:
        await conn.close()
    live_map = dispatcher.app.state.service
    await eventually(lambda: _known(live_map, units.values()), what="the dispatcher to learn the crew")

    async def ingest_knows() -> bool:
        return all(u in ingest.app.state.service.directory.current().by_unit for u in units.values())

    await eventually(ingest_knows, what="ingest to learn the crew (it refuses pings of units it does not know)")
    crew = Crew(platform.id, units)
    await report(ingest, crew)
    return crew


async def _known(service: Any, unit_ids: Any) -> bool:
    return all(u in service._live_map.units for u in unit_ids)


def place(index: int) -> tuple[float, float]:
    return HOME[0] + 0.002 * index, HOME[1] + 0.004 * index


async def report(ingest: RunningService, crew: Crew) -> None:
    now = datetime.now(UTC).isoformat()
    pings = [
        {"kind": "position", "unit_id": unit_id, "ts": now, "lat": place(i)[0], "lon": place(i)[1],
         "speed_kmh": 20.0, "heading_deg": 45.0}
        for i, unit_id in enumerate(crew.units.values())
    ]  # fmt: skip
    async with httpx.AsyncClient(base_url=ingest.url, headers=auth("terminal")) as c:
        response = await c.post("/v1/telemetry", json=pings)
        assert response.status_code == 202, response.text
        assert response.json()["accepted"] == len(pings), response.text


def auth(role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[role]}"}


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        launched = await p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield launched
        await launched.close()


async def open_console(browser: Browser, dispatcher: RunningService | str, role: str, size: tuple[int, int]) -> Page:
    page = await browser.new_page(viewport={"width": size[0], "height": size[1]})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    await page.goto(f"{dispatcher if isinstance(dispatcher, str) else dispatcher.url}/console/")
    await page.fill("#token", TOKENS[role])
    await page.click("#login button[type=submit]")
    try:
        await page.wait_for_function("window.kuaijing.live && window.kuaijing.unitsDrawn > 0", timeout=30_000)
    except PlaywrightTimeout as e:
        state = await page.evaluate("JSON.stringify({...window.kuaijing, frames: window.kuaijing.frames.length})")
        raise AssertionError(f"the console did not come up: {state}; errors: {errors}") from e
    assert TOKENS[role] not in page.url, "the token stays out of the URL"
    assert errors == []
    return page


async def drawn(page: Page, unit_id: str) -> dict[str, Any]:
    return await page.evaluate("(id) => window.kuaijing.drawn[id] || null", unit_id)  # type: ignore[no-any-return]


async def click_at(page: Page, lat: float, lon: float) -> None:
    point = await page.evaluate("([lon, lat]) => window.kuaijing.pointOf(lon, lat)", [lon, lat])
    await page.mouse.click(point["x"], point["y"])


async def shot(page: Page, name: str) -> Image.Image:
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTEFACTS / f"{name}.png"
    await page.screenshot(path=str(path))
    return Image.open(path).convert("RGB")


async def test_the_map_draws_streets_and_every_unit_by_kind_at_wall_screen_size(
    browser: Browser, dispatcher: RunningService, crew: Crew
) -> None:
    page = await open_console(browser, dispatcher, "dispatcher", (1920, 1080))
    for kind, unit_id in crew.units.items():
        unit = await drawn(page, unit_id)
        assert unit is not None, unit_id
        assert (unit["colour"], unit["online"], unit["busy"]) == (KIND_COLOURS[kind], True, False)
    streets = await page.evaluate("window.kuaijing && document.querySelector('#city').textContent")
    assert "Shaoyang" in streets, "the base map comes from the city file"
    await page.evaluate("([lon, lat]) => window.kuaijing.jumpTo(lon, lat, 14)", [HOME[1], HOME[0]])
    await page.wait_for_timeout(1_000)
    image = await shot(page, "map-wall-screen")
    for kind, colour in KIND_COLOURS.items():
        assert pixels_near(image, rgb(colour), tolerance=20) > 20, f"no {kind} ({colour}) drawn"
    platform_row = page.locator("#platforms tbody tr", has_text=crew.platform_id[-6:])
    assert await platform_row.locator("td").all_inner_texts() == [
        f"控制台测试平台 {crew.platform_id[2:]}",
        "3",
        "0",
        "0",
    ]
    coverage_row = page.locator('#coverage tbody tr[data-zone-class="other_urban"]')
    await coverage_row.wait_for(timeout=20_000)
    name, share, reached = await coverage_row.locator("td").all_inner_texts()
    covered, cells = (int(n) for n in reached.split("/"))
    assert name == "其他城区 5分钟"
    assert share == f"{covered / cells * 100:.1f}%"
    assert cells >= 7
    await page.close()


async def test_a_unit_moving_redraws_the_layer_of_what_moves_and_never_the_map(
    browser: Browser, dispatcher: RunningService, ingest: RunningService, crew: Crew
) -> None:
    """What keeps a wall screen smooth (`bench console` measures how much): a ping redraws the canvas over the map,
    while the WebGL map, a repaint of which costs about 120 ms where WebGL is software, is not repainted."""
    page = await open_console(browser, dispatcher, "dispatcher", (1920, 1080))
    await page.evaluate("([lon, lat]) => window.kuaijing.jumpTo(lon, lat, 14)", [HOME[1], HOME[0]])
    await page.wait_for_timeout(1_000)
    renders = await page.evaluate("window.kuaijing.mapRenders")
    patrol_car = crew.units[UnitKind.PATROL_CAR]
    lat, lon = HOME[0] - 0.006, HOME[1] + 0.002
    async with httpx.AsyncClient(base_url=ingest.url, headers=auth("terminal")) as c:
        ping = {"kind": "position", "unit_id": patrol_car, "ts": datetime.now(UTC).isoformat(), "lat": lat,
                "lon": lon, "speed_kmh": 30.0, "heading_deg": 180.0}  # fmt: skip
        assert (await c.post("/v1/telemetry", json=ping)).status_code == 202
    await page.wait_for_function(
        "([id, lon]) => window.kuaijing.drawn[id]?.lon === lon", arg=[patrol_car, lon], timeout=15_000
    )
    await page.wait_for_timeout(300)
    pixel = await page.evaluate(
        """([lon, lat]) => {
          const canvas = document.querySelector("#moving-marks");
          const { x, y } = window.kuaijing.pointOf(lon, lat);
          const box = canvas.getBoundingClientRect(), ratio = canvas.width / box.width;
          return [...canvas.getContext("2d").getImageData((x - box.left) * ratio, (y - box.top) * ratio, 1, 1).data];
        }""",
        [lon, lat],
    )
    assert pixel[:3] == list(rgb(KIND_COLOURS[UnitKind.PATROL_CAR])), pixel
    assert await page.evaluate("window.kuaijing.mapRenders") == renders, "the map repainted for a unit's move"
    await page.close()


async def test_a_call_clicked_on_the_map_is_published_and_the_recommended_unit_assigned(
    browser: Browser, settings: CommonSettings, dispatcher: RunningService, crew: Crew
) -> None:
    page = await open_console(browser, dispatcher, "dispatcher", (1366, 768))
    await page.evaluate("([lon, lat]) => window.kuaijing.jumpTo(lon, lat, 14)", [HOME[1], HOME[0]])
    await page.wait_for_timeout(500)
    scene = (HOME[0] - 0.003, HOME[1] - 0.003)
    async with TopicTail(settings.kafka, CALLS) as calls:
        await click_at(page, *scene)
        form = page.locator("#new-call")
        await form.locator("select[name=category]").select_option("dispute")
        await form.locator("button[type=submit]").click()
        patrol_car = crew.units[UnitKind.PATROL_CAR]
        assign = page.locator(f"button[data-assign='{patrol_car}']")
        await assign.wait_for(timeout=10_000)
        await shot(page, "call-card-laptop")
        [created] = await calls.collect(lambda v: v["event"] == "created" and v["category"] == "dispute", 1)
        assert abs(created["lat"] - scene[0]) < 0.0005
        assert abs(created["lon"] - scene[1]) < 0.0005
        await assign.click()
        [assigned] = await calls.collect(lambda v: v["event"] == "assigned" and v["call_id"] == created["call_id"], 1)
    assert assigned["unit_id"] == patrol_car
    async with httpx.AsyncClient(base_url=dispatcher.url, headers=auth("viewer")) as c:
        unit = (await c.get(f"/v1/units/{patrol_car}")).json()
    assert (unit["status"], unit["call_id"]) == ("dispatched", created["call_id"])
    await page.wait_for_function(f"window.kuaijing.drawn['{patrol_car}']?.busy === true", timeout=10_000)

    await page.locator("#detail button[data-status='off_duty']").click()
    async with httpx.AsyncClient(base_url=dispatcher.url, headers=auth("viewer")) as c:

        async def off_duty() -> bool:
            return bool((await c.get(f"/v1/units/{patrol_car}")).json()["status"] == "off_duty")

        await eventually(off_duty, what="the unit card's status change at the dispatcher")
        await page.locator("#detail button[data-status='available']").click()

        async def available() -> bool:
            return bool((await c.get(f"/v1/units/{patrol_car}")).json()["status"] == "available")

        await eventually(available, what="the unit back to available")

        station = next(p for p in (await c.get("/v1/map")).json()["places"] if "railway station" in p["name"])
        await click_at(page, HOME[0] + 0.004, HOME[1] - 0.004)
        form = page.locator("#new-call")
        await form.locator("#place").select_option(label=station["name"])
        async with TopicTail(settings.kafka, CALLS) as calls:
            await form.locator("button[type=submit]").click()
            [picked] = await calls.collect(lambda v: v["event"] == "created" and v["lat"] == station["lat"], 1)
        assert picked["lon"] == station["lon"]
        assert (await c.get(f"/v1/calls/{picked['call_id']}")).json()["address"] == station["name"]
        assert (await c.get(f"/v1/calls/{created['call_id']}")).json()["address"] is None
        motorcycle = crew.units[UnitKind.MOTORCYCLE]
        dispatch = {"Authorization": f"Bearer {TOKENS['dispatcher']}"}
        await c.post(f"/v1/calls/{picked['call_id']}/assign", json={"unit_id": motorcycle}, headers=dispatch)
        await c.post(f"/v1/units/{motorcycle}/status", json={"status": "available"}, headers=dispatch)
    await page.close()


async def test_an_overdue_call_turns_red_on_the_board_and_the_map(
    browser: Browser, dispatcher: RunningService, crew: Crew
) -> None:
    late = datetime.now(UTC) - timedelta(minutes=20)
    spot = (HOME[0] + 0.006, HOME[1] - 0.006)
    async with httpx.AsyncClient(base_url=dispatcher.url, headers=auth("dispatcher")) as c:
        body = {"lat": spot[0], "lon": spot[1], "category": "theft", "priority": 2, "received_at": late.isoformat()}
        created = (await c.post("/v1/calls", json=body)).json()
    page = await open_console(browser, dispatcher, "viewer", (1600, 1000))
    row = page.locator("#board tbody tr", has_text=created["call_id"][-5:])
    await row.wait_for(timeout=10_000)
    assert "overdue" in (await row.get_attribute("class") or "")
    assert (await row.locator("td.left").inner_text()).startswith("-")
    await page.evaluate("([lon, lat]) => window.kuaijing.jumpTo(lon, lat, 15)", [spot[1], spot[0]])
    await page.wait_for_timeout(1_000)
    image = await shot(page, "overdue-call")
    assert pixels_near(image, rgb(OVERDUE), tolerance=20) > 30, "the overdue call is not red on the map"
    command_car = crew.units[UnitKind.COMMAND_CAR]
    async with httpx.AsyncClient(base_url=dispatcher.url, headers=auth("dispatcher")) as c:
        assert (await c.post(f"/v1/calls/{created['call_id']}/assign", json={"unit_id": command_car})).is_success
        assert (await c.post(f"/v1/units/{command_car}/status", json={"status": "available"})).is_success
    await row.wait_for(state="detached", timeout=10_000)
    await page.close()


async def test_a_dispatcher_closes_a_call_no_unit_was_sent_to_from_its_card(
    browser: Browser, dispatcher: RunningService
) -> None:
    spot = (HOME[0] - 0.006, HOME[1] + 0.006)
    async with httpx.AsyncClient(base_url=dispatcher.url, headers=auth("dispatcher")) as c:
        body = {"lat": spot[0], "lon": spot[1], "category": "noise", "priority": 3}
        created = (await c.post("/v1/calls", json=body)).json()
    page = await open_console(browser, dispatcher, "dispatcher", (1366, 768))
    row = page.locator("#board tbody tr", has_text=created["call_id"][-5:])
    await row.click(timeout=10_000)
    await page.locator(f"#detail button[data-close-call='{created['call_id']}']").click(timeout=5_000)
    await row.wait_for(state="detached", timeout=10_000)
    assert await page.locator("#detail").is_hidden()
    async with httpx.AsyncClient(base_url=dispatcher.url, headers=auth("viewer")) as c:
        call = (await c.get(f"/v1/calls/{created['call_id']}")).json()
    assert call["status"] == "closed"
    assert call["timeline"][-1]["source"] == "console"
    await page.close()


async def test_a_viewer_sees_everything_and_can_change_nothing(
    browser: Browser, dispatcher: RunningService, crew: Crew
) -> None:
    page = await open_console(browser, dispatcher, "viewer", (1920, 1080))
    await page.evaluate("([lon, lat]) => window.kuaijing.jumpTo(lon, lat, 14)", [HOME[1], HOME[0]])
    await page.wait_for_timeout(500)
    await click_at(page, HOME[0] - 0.004, HOME[1] + 0.004)
    assert await page.locator("#new-call").count() == 0, "a viewer was offered the new-call form"
    motorcycle = crew.units[UnitKind.MOTORCYCLE]
    await click_at(page, *place(list(crew.units.values()).index(motorcycle)))
    await page.locator("#detail h2").wait_for(timeout=5_000)
    assert await page.locator("#detail button[data-status]").count() > 0
    assert not await page.locator("#detail button[data-status]").first.is_visible(), "status controls shown"
    await shot(page, "viewer-unit-card")
    refused = await page.evaluate(
        """async ([token, id]) => (await fetch(`/v1/units/${id}/status`, {method: "POST",
             headers: {Authorization: `Bearer ${token}`, "Content-Type": "application/json"},
             body: JSON.stringify({status: "off_duty"})})).status""",
        [TOKENS["viewer"], motorcycle],
    )
    assert refused == 403
    await page.click("header button.lang")
    assert await page.locator("header h1").inner_text() == "Kuaijing console"
    await page.close()


class Cable:
    """A TCP relay between the browser and the dispatcher that the test can cut: the network dropping under a
    console, which no browser setting does to a stream already open."""

    def __init__(self, port: int) -> None:
        self._port, self.connected = port, True
        self._pipes: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        self.url = ""

    async def __aenter__(self) -> Cable:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.cut()
        assert self._server is not None
        self._server.close()

    def cut(self) -> None:
        for writer in self._pipes:
            writer.transport.abort()
        self._pipes.clear()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.connected:
            writer.transport.abort()
            return
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self._port)
        self._pipes |= {writer, upstream_writer}

        async def pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.transport.abort()

        await asyncio.gather(pump(reader, upstream_writer), pump(upstream_reader, writer))


async def test_the_feed_reconnects_by_itself_and_catches_up(
    browser: Browser, dispatcher: RunningService, crew: Crew
) -> None:
    command_car = crew.units[UnitKind.COMMAND_CAR]
    async with Cable(dispatcher.port) as cable:
        page = await open_console(browser, cable.url, "viewer", (1366, 768))
        cable.connected = False
        cable.cut()
        await page.wait_for_function("!window.kuaijing.live", timeout=15_000)
        async with httpx.AsyncClient(base_url=dispatcher.url, headers=auth("dispatcher")) as c:
            response = await c.post(f"/v1/units/{command_car}/status", json={"status": "off_duty"})
            assert response.status_code == 200, response.text
        cable.connected = True
        await page.wait_for_function("window.kuaijing.live", timeout=30_000)
        await page.wait_for_function(f"window.kuaijing.drawn['{command_car}']?.busy === true", timeout=10_000)
        await page.close()
    async with httpx.AsyncClient(base_url=dispatcher.url, headers=auth("dispatcher")) as c:
        await c.post(f"/v1/units/{command_car}/status", json={"status": "available"})
