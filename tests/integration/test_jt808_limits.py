"""The JT/T 808 gateway against what a port on the internet meets besides terminals: slow-loris connections, frames
longer than any valid message, floods of unknown terminals, reconnect storms and half-open sockets. Each is closed
by a limit that is a setting, with a log line saying why, while a real terminal beside them keeps reporting; and
an authenticated session reports only for its own terminal."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from services.ingest.settings import IngestSettings
from shared import jt808
from shared.contract.topics import DEADLETTER, POSITIONS
from shared.jt808 import MessageId, RegisterResult, Result
from shared.settings import CommonSettings
from tests.conftest import Fleet, Infra, RunningService, register_fleet
from tests.harness import TopicTail, eventually, free_port
from tests.integration.test_analytics import metric
from tests.integration.test_jt808_gateway import Terminal, location

pytestmark = pytest.mark.integration

IDLE_S, AUTH_S, FRAME_S = 3.0, 2.0, 2.0
MAX_SESSIONS, MAX_FAILED_LOGINS = 60, 3
LIMITS: dict[str, float] = {
    "jt808_idle_timeout_s": IDLE_S,
    "jt808_auth_timeout_s": AUTH_S,
    "jt808_frame_timeout_s": FRAME_S,
    "jt808_max_sessions": MAX_SESSIONS,
    "jt808_max_discarded_bytes": 4096,
    "jt808_max_failed_logins": MAX_FAILED_LOGINS,
}


@pytest.fixture(scope="module")
async def gateway(ingest_settings: IngestSettings) -> AsyncIterator[RunningService]:
    from services.ingest.app import create_app

    settings = ingest_settings.model_copy(update={"jt808_port": free_port(), **LIMITS, "raw_consumer_enabled": False})
    async with RunningService(create_app(settings)) as service:
        yield service


def port_of(service: RunningService) -> int:
    return int(service.app.state.settings.jt808_port)


async def metrics(service: RunningService) -> str:
    async with httpx.AsyncClient(base_url=service.url) as c:
        return (await c.get("/metrics")).text


async def closed(service: RunningService, reason: str) -> float:
    return metric(await metrics(service), "kuaijing_jt808_closed_total", reason=reason)


async def dribble(writer: asyncio.StreamWriter, data: bytes, every_s: float) -> None:
    """A byte at a time, until done or the gateway hangs up."""
    try:
        for byte in data:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(every_s)
    except ConnectionError:
        return


async def closed_by_gateway(reader: asyncio.StreamReader, within_s: float) -> float:
    """Seconds until the gateway closed the connection (reading and dropping whatever it answered before)."""
    began = time.monotonic()
    async with asyncio.timeout(within_s):
        while await reader.read(4096):
            pass
    return time.monotonic() - began


@pytest.fixture(scope="module")
async def fleet(infra: Infra, gateway: RunningService) -> Fleet:
    registered = await register_fleet(infra.database, units=3, terminals=True)

    async def known() -> bool:
        directory = gateway.app.state.service.directory.current()
        return all(t in directory.by_terminal for t in registered.terminal_ids)

    await eventually(known, what="the gateway to learn the terminals")
    return registered


async def logged_in(port: int, phone: str) -> Terminal:
    terminal = await Terminal(port, phone).__aenter__()
    result, code = await terminal.register()
    assert result == RegisterResult.SUCCESS
    auth = jt808.encode_authentication(jt808.Authentication(code), wide=False)
    assert await terminal.general(MessageId.AUTHENTICATE, auth) == Result.SUCCESS
    return terminal


async def test_a_frame_longer_than_any_valid_message_closes_the_connection(
    gateway: RunningService, caplog: pytest.LogCaptureFixture
) -> None:
    before = await closed(gateway, "junk")
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(gateway))
    with caplog.at_level(logging.WARNING, logger="services.ingest.gateway"):
        writer.write(b"\x7e" + b"\x01" * (3 * jt808.MAX_FRAME))
        await writer.drain()
        await closed_by_gateway(reader, within_s=5)
    writer.close()
    assert await closed(gateway, "junk") == before + 1
    assert any("longer than any valid message" in r.getMessage() for r in caplog.records)


async def test_a_slow_loris_connection_is_closed_when_it_has_not_authenticated_in_time(
    gateway: RunningService, caplog: pytest.LogCaptureFixture
) -> None:
    """A byte every half second never trips the idle timeout; the authentication deadline closes it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(gateway))
    [frame] = jt808.encode_frames(MessageId.HEARTBEAT, b"", phone="013800000000", serial=1)

    with caplog.at_level(logging.INFO, logger="services.ingest.gateway"):
        dribbling = asyncio.create_task(dribble(writer, frame * 10, every_s=0.5))
        took = await closed_by_gateway(reader, within_s=AUTH_S + 3)
        dribbling.cancel()
    writer.close()
    assert took >= AUTH_S - 0.5
    assert any("not authenticated within 2 s" in r.getMessage() for r in caplog.records)


async def test_an_authenticated_terminal_dribbling_a_frame_is_closed(gateway: RunningService, fleet: Fleet) -> None:
    terminal = await logged_in(port_of(gateway), fleet.terminal_ids[0])
    before = await closed(gateway, "slow_frame")
    [frame] = jt808.encode_frames(MessageId.HEARTBEAT, b"", phone=fleet.terminal_ids[0].zfill(12), serial=50)
    dribbling = asyncio.create_task(dribble(terminal.writer, frame[:-1], every_s=0.4))
    try:
        await closed_by_gateway(terminal.reader, within_s=FRAME_S + 3)
    finally:
        dribbling.cancel()
        terminal.writer.close()
    assert await closed(gateway, "slow_frame") == before + 1


async def test_a_flood_of_unknown_terminals_and_a_reconnect_storm_leave_a_real_terminal_reporting(
    settings: CommonSettings, gateway: RunningService, fleet: Fleet, caplog: pytest.LogCaptureFixture
) -> None:
    port = port_of(gateway)
    unit = fleet.unit_ids[1]

    async def stranger(n: int) -> None:
        """Registers as an unknown terminal until the gateway hangs up on it."""
        async with Terminal(port, f"1990000{n:04d}") as t:
            for _ in range(MAX_FAILED_LOGINS):
                result, _code = await t.register()
                assert result == RegisterResult.TERMINAL_UNKNOWN
            await closed_by_gateway(t.reader, within_s=5)

    async def storm() -> None:
        """Connect and hang up at once, 300 times."""
        for _ in range(300):
            _reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()

    now = datetime.now(UTC).replace(microsecond=0)
    before = await closed(gateway, "failed_logins")
    with caplog.at_level(logging.WARNING, logger="services.ingest.gateway"):
        async with TopicTail(settings.kafka, POSITIONS) as positions:
            terminal = await logged_in(port, fleet.terminal_ids[1])

            async def report() -> list[int]:
                results = []
                for i in range(40):
                    ping = jt808.encode_location(location(now - timedelta(seconds=i), 27.24, 111.47))
                    results.append(await terminal.general(MessageId.LOCATION, ping))
                return results

            results, *_ = await asyncio.gather(report(), *(stranger(n) for n in range(40)), storm(), storm())
            terminal.writer.close()
            await positions.collect(lambda v: v["unit_id"] == unit, 40)
    assert results == [Result.SUCCESS] * 40
    assert await closed(gateway, "failed_logins") == before + 40
    assert any("refused registrations or authentications" in r.getMessage() for r in caplog.records)

    async def all_gone() -> bool:
        return metric(await metrics(gateway), "kuaijing_jt808_sessions") == 0

    await eventually(all_gone, timeout_s=10, what="every connection of the flood closed")


async def test_half_open_connections_are_closed_and_past_capacity_connections_turned_away(
    gateway: RunningService, fleet: Fleet, caplog: pytest.LogCaptureFixture
) -> None:
    """Authenticated terminals that vanish without closing their socket (half-open) hold a slot only until the idle
    timeout; meanwhile connections past `jt808_max_sessions` are closed on arrival with one log line."""
    terminals = [await logged_in(port_of(gateway), fleet.terminal_ids[2]) for _ in range(2)]
    idle = [await asyncio.open_connection("127.0.0.1", port_of(gateway)) for _ in range(MAX_SESSIONS)]
    turned_away_before = await closed(gateway, "capacity")
    with caplog.at_level(logging.WARNING, logger="services.ingest.gateway"):
        extra_reader, extra_writer = await asyncio.open_connection("127.0.0.1", port_of(gateway))
        assert await closed_by_gateway(extra_reader, within_s=2) < 1
    extra_writer.close()
    assert await closed(gateway, "capacity") >= turned_away_before + 1
    assert any("JT808_MAX_SESSIONS" in r.getMessage() for r in caplog.records)
    idle_before = await closed(gateway, "idle")
    for terminal in terminals:
        await closed_by_gateway(terminal.reader, within_s=IDLE_S + 3)
        terminal.writer.close()
    for reader, writer in idle:
        await closed_by_gateway(reader, within_s=AUTH_S + 3)
        writer.close()
    assert await closed(gateway, "idle") == idle_before + 2


async def test_a_session_reports_only_for_the_terminal_it_authenticated_as(
    settings: CommonSettings, gateway: RunningService, fleet: Fleet
) -> None:
    mine, other = fleet.terminal_ids[0], fleet.terminal_ids[1]
    other_unit = fleet.unit_ids[1]
    ts = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)
    terminal = await logged_in(port_of(gateway), mine)
    try:
        async with TopicTail(settings.kafka, DEADLETTER) as deadletter, TopicTail(settings.kafka, POSITIONS) as pos:
            body = jt808.encode_location(location(ts, 27.3, 111.3))
            [frame] = jt808.encode_frames(MessageId.LOCATION, body, phone=other.zfill(12), serial=77)
            terminal.writer.write(frame)
            await terminal.writer.drain()
            reply = jt808.parse_frame((terminal.splitter.feed(await terminal.reader.read(4096)))[0])
            assert jt808.decode_general_response(reply.body).result == Result.FAILURE
            [letter] = await deadletter.collect(lambda v: v["reason"] == "unauthenticated" and other in v["error"], 1)
            own = jt808.encode_location(location(ts, 27.3, 111.3))
            assert await terminal.general(MessageId.LOCATION, own) == Result.SUCCESS
            await pos.collect(lambda v: v["unit_id"] == fleet.unit_ids[0] and v["lat"] == 27.3, 1)
            assert pos.keys_of(lambda v: v["unit_id"] == other_unit and v["lat"] == 27.3) == []
    finally:
        terminal.writer.close()
    assert letter["source"] == "jt808"
