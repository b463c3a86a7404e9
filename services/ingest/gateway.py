"""The JT/T 808 TCP gateway: terminals connect, register, authenticate and report; pings join the intake.

One session per connection. Frames are handled in order and a location is acknowledged (0x8001) only after Kafka
acknowledged its ping, so a terminal that loses the connection re-sends what was not confirmed (at least once), and
a slow Kafka slows the reading of the socket: backpressure reaches the terminal through TCP.

What a gateway on the internet meets besides terminals is bounded by `Limits`, each a setting, each closing the
connection with a log line and a count in `kuaijing_jt808_closed_total{reason}`: a silent or half-open connection
(`idle`), one that never authenticates, as slow-loris connections and floods of unknown terminals do
(`unauthenticated`), a frame dribbled byte by byte (`slow_frame`), junk and frames longer than any valid message
(`junk`), repeated refused logins (`failed_logins`), and connections past the gateway's capacity (`capacity`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from services.ingest.adapters.terminal_store import TerminalStore
from services.ingest.domain.telemetry import PositionWriter
from services.ingest.intake import Candidate, TelemetryIntake
from services.ingest.metrics import IngestMetrics
from services.ingest.terminal_frames import LOCATION_MESSAGES, location_candidates, rejected
from shared import jt808
from shared.contract.registry import UnitDirectory, UnitRef
from shared.contract.schemas import RejectReason, Source
from shared.errors import UnavailableError
from shared.jt808 import Frame, Jt808Error, MessageId, RegisterResult, Result

log = logging.getLogger(__name__)

_READ_SIZE = 64 * 1024
_TURNED_AWAY_LOG_EVERY_S = 10.0
_TIMED_OUT = {
    "idle": "silent for {limits.idle_timeout_s:.0f} s",
    "unauthenticated": "not authenticated within {limits.auth_timeout_s:.0f} s of connecting",
    "slow_frame": "a frame begun {limits.frame_timeout_s:.0f} s ago is still not complete",
}
"""What each limit on time says when it closes a connection."""


def allow_many_connections() -> int:
    """Raise this process's soft limit on open files to its hard limit: each terminal holds a socket, and the usual
    soft default of 1,024 would refuse the thousand-and-first. Returns the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft >= hard:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError) as e:
        log.warning("open files limit stays at %s (%s): at most that many terminals at once", soft, e)
        return soft
    log.info("open files limit raised from %s to %s for terminal connections", soft, hard)
    return hard


@dataclass(frozen=True, slots=True)
class Limits:
    idle_timeout_s: float
    auth_timeout_s: float
    frame_timeout_s: float
    max_sessions: int
    max_discarded_bytes: int
    max_failed_logins: int


@dataclass
class Session:
    peer: str
    origin: str = field(init=False)
    """Where its dead letters say they came from."""
    unit: UnitRef | None = None
    serial: int = 0
    failed_logins: int = 0
    reassembler: jt808.Reassembler = field(default_factory=jt808.Reassembler)

    def __post_init__(self) -> None:
        self.origin = f"jt808/{self.peer}"

    def next_serial(self) -> int:
        self.serial = (self.serial + 1) & 0xFFFF
        return self.serial


class Jt808Gateway:
    def __init__(
        self,
        *,
        intake: TelemetryIntake,
        directory: Callable[[], UnitDirectory],
        terminals: TerminalStore,
        metrics: IngestMetrics,
        limits: Limits,
    ) -> None:
        self._intake = intake
        self._directory = directory
        self._terminals = terminals
        self._metrics = metrics
        self._limits = limits
        self._turned_away = 0
        self._turned_away_logged_at = -math.inf
        self.sessions = 0
        self._writers: set[asyncio.StreamWriter] = set()

    def _count(self, message_id: int, frames: int = 1) -> None:
        self._metrics.jt808_frames_by(f"0x{message_id:04x}").inc(frames)

    async def disconnect_all(self) -> None:
        """On shutdown: terminals reconnect to another replica and re-send what was not acknowledged."""
        for writer in list(self._writers):
            writer.close()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = "{}:{}".format(*writer.get_extra_info("peername", ("?", 0))[:2])
        if self.sessions >= self._limits.max_sessions:
            self._turn_away(peer)
            writer.close()
            return
        session = Session(peer)
        self.sessions += 1
        self._writers.add(writer)
        self._metrics.jt808_sessions.set(self.sessions)
        reason = "hung_up"
        try:
            reason = await self._converse(session, reader, writer)
        except (ConnectionError, OSError) as e:
            log.info("connection %s (%s) lost: %s", peer, _who(session), e)
        except UnavailableError as e:
            # Nothing unacknowledged was answered with 0x8001, so the terminal re-sends it after reconnecting.
            reason = "kafka_unavailable"
            log.warning("closing %s (%s): Kafka did not acknowledge (%s)", peer, _who(session), e)
        finally:
            self._metrics.jt808_closed.labels(reason).inc()
            self.sessions -= 1
            self._writers.discard(writer)
            self._metrics.jt808_sessions.set(self.sessions)
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    async def _converse(self, session: Session, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> str:
        """Reads, answers and enforces the limits until the connection ends; returns why it ended."""
        limits, peer = self._limits, session.peer
        loop = asyncio.get_running_loop()
        opened = loop.time()
        frame_began: float | None = None
        splitter = jt808.FrameSplitter()
        watch = _Watch(loop, session, writer, limits)
        try:
            while True:
                deadline, reason = loop.time() + limits.idle_timeout_s, "idle"
                if session.unit is None and opened + limits.auth_timeout_s < deadline:
                    deadline, reason = opened + limits.auth_timeout_s, "unauthenticated"
                if frame_began is not None and frame_began + limits.frame_timeout_s < deadline:
                    deadline, reason = frame_began + limits.frame_timeout_s, "slow_frame"
                watch.arm(deadline, reason)
                data = await reader.read(_READ_SIZE)
                watch.reading = False
                if not data or watch.expired:  # what arrived as the limit expired is not answered either
                    return watch.expired or "hung_up"
                frames = splitter.feed(data)
                frame_began = None if not splitter.pending else frame_began or loop.time()
                replies = await self._handle_chunk(session, frames)
                if replies:
                    writer.write(b"".join(replies))
                await writer.drain()
                if replies is None:
                    return "logout"
                if splitter.discarded > limits.max_discarded_bytes:
                    log.warning(
                        "closing %s (%s): %s bytes of junk or of frames longer than any valid message (%s bytes)",
                        peer, _who(session), splitter.discarded, jt808.MAX_FRAME,
                    )  # fmt: skip
                    return "junk"
                if session.failed_logins >= limits.max_failed_logins:
                    log.warning(
                        "closing %s: %s refused registrations or authentications (unknown terminal or wrong code)",
                        peer, session.failed_logins,
                    )  # fmt: skip
                    return "failed_logins"
        finally:
            watch.disarm()

    def _turn_away(self, peer: str) -> None:
        """At capacity: closed on arrival, logged at most every few seconds however many arrive."""
        self._metrics.jt808_closed.labels("capacity").inc()
        self._turned_away += 1
        now = time.monotonic()
        if now - self._turned_away_logged_at >= _TURNED_AWAY_LOG_EVERY_S:
            log.warning(
                "turned away %s connections (latest %s): already %s terminal connections, the most allowed "
                "(KUAIJING_JT808_MAX_SESSIONS)", self._turned_away, peer, self.sessions,
            )  # fmt: skip
            self._turned_away, self._turned_away_logged_at = 0, now

    async def _handle_chunk(self, session: Session, wires: list[bytes]) -> list[bytes] | None:
        """Frames that arrived together, answered in order; consecutive locations go to Kafka as one batch, which
        is what keeps a terminal catching up on a blind area (and a thousand terminals at once) fast."""
        replies: list[bytes] = []
        batch: list[tuple[Frame, list[Candidate]]] = []
        locations: dict[int, int] = {}  # counted once per chunk: a counter's lock is dear next to a frame
        writer: PositionWriter | None = None
        try:
            for wire in wires:
                try:
                    packet = jt808.parse_frame(wire)
                except Jt808Error as e:
                    self._metrics.jt808_frames_by("invalid").inc()
                    await self._reject(wire, RejectReason.INVALID_FRAME, f"jt808: {e}", session)
                    continue
                header = packet.header
                unit = session.unit
                if (
                    unit is not None
                    and header.message_id in LOCATION_MESSAGES
                    and not header.subpackaged
                    and header.terminal_id == unit.terminal_id
                ):
                    locations[header.message_id] = locations.get(header.message_id, 0) + 1
                    writer = writer or self._intake.position_writer(Source.JT808)
                    candidates = location_candidates(packet, wire, unit=unit, origin=session.origin, writer=writer)
                    batch.append((packet, candidates))
                    continue
                self._count(header.message_id)
                replies += await self._flush(session, batch)
                batch = []
                handled = await self._handle(session, packet, wire)
                if handled is None:
                    return replies
                replies += handled
            return replies + await self._flush(session, batch)
        finally:
            for message_id, frames in locations.items():
                self._count(message_id, frames)

    async def _flush(self, session: Session, batch: list[tuple[Frame, list[Candidate]]]) -> list[bytes]:
        if not batch:
            return []
        rejections = await self._intake.submit([c for _, cs in batch for c in cs], source=Source.JT808)
        rejected_at = {r.index for r in rejections}
        replies, start = [], 0
        for frame, candidates in batch:
            failed = bool(rejected_at) and any(i in rejected_at for i in range(start, start + len(candidates)))
            replies += self._reply(session, frame, Result.MESSAGE_ERROR if failed else Result.SUCCESS)
            start += len(candidates)
        return replies

    async def _handle(self, session: Session, packet: Frame, wire: bytes) -> list[bytes] | None:
        """Replies to one frame off the fast path; None ends the session (logout)."""
        header = packet.header
        frame = session.reassembler.add(packet)
        if frame is None:  # a subpacket: each one is acknowledged (JT/T 1078 section 5.6.2)
            return self._reply(session, packet, Result.SUCCESS)
        match header.message_id:
            case MessageId.REGISTER:
                return await self._register(session, frame)
            case MessageId.AUTHENTICATE:
                return await self._authenticate(session, frame)
            case MessageId.HEARTBEAT:
                return self._reply(session, frame, Result.SUCCESS)
            case MessageId.LOGOUT:
                session.unit = None
                return None
            case MessageId.TERMINAL_RESPONSE:
                return []
            case _ if header.message_id in LOCATION_MESSAGES:
                return await self._locations(session, frame, wire)
            case MessageId.AV_ATTRIBUTES | MessageId.RESOURCE_LIST | MessageId.TRANSMISSION_STATUS:
                return self._reply(session, frame, self._decodes(frame))
            case _:
                self._metrics.jt808_skipped.inc()
                return self._reply(session, frame, Result.NOT_SUPPORTED)

    def _decodes(self, frame: Frame) -> Result:
        decoder = {
            MessageId.AV_ATTRIBUTES: jt808.decode_av_attributes,
            MessageId.RESOURCE_LIST: jt808.decode_resource_list,
            MessageId.TRANSMISSION_STATUS: jt808.decode_transmission_status,
        }[MessageId(frame.header.message_id)]
        try:
            log.debug("%s: %s", frame.header.terminal_id, decoder(frame.body))
        except Jt808Error:
            return Result.MESSAGE_ERROR
        return Result.SUCCESS

    async def _register(self, session: Session, frame: Frame) -> list[bytes]:
        header = frame.header
        try:
            jt808.decode_registration(frame.body, wide=header.is_2019)
        except Jt808Error as e:
            session.failed_logins += 1
            log.info("bad registration from %s: %s", session.peer, e)
            return self._send(
                session,
                frame,
                MessageId.REGISTER_RESPONSE,
                jt808.encode_register_response(header.serial, RegisterResult.TERMINAL_UNKNOWN, None),
            )
        unit = self._directory().by_terminal.get(header.terminal_id)
        if unit is None:
            session.failed_logins += 1
            log.info("registration refused: terminal %s is not in the registry", header.terminal_id)
            body = jt808.encode_register_response(header.serial, RegisterResult.TERMINAL_UNKNOWN, None)
        else:
            code = await self._terminals.register(header.terminal_id)
            body = jt808.encode_register_response(header.serial, RegisterResult.SUCCESS, code)
            log.info("terminal %s registered as unit %s", header.terminal_id, unit.unit_id)
        return self._send(session, frame, MessageId.REGISTER_RESPONSE, body)

    async def _authenticate(self, session: Session, frame: Frame) -> list[bytes]:
        header = frame.header
        try:
            auth = jt808.decode_authentication(frame.body, wide=header.is_2019)
        except Jt808Error:
            return self._reply(session, frame, Result.MESSAGE_ERROR)
        unit = self._directory().by_terminal.get(header.terminal_id)
        if unit is None or not await self._terminals.authenticates(header.terminal_id, auth.auth_code):
            log.info("authentication failed for terminal %s from %s", header.terminal_id, session.peer)
            session.failed_logins += 1
            session.unit = None
            return self._reply(session, frame, Result.FAILURE)
        session.unit = unit
        return self._reply(session, frame, Result.SUCCESS)

    async def _locations(self, session: Session, frame: Frame, wire: bytes) -> list[bytes]:
        unit = session.unit
        if unit is None or unit.terminal_id != frame.header.terminal_id:
            error = f"terminal {frame.header.terminal_id} reported before authenticating (0x0102)"
            await self._reject(wire, RejectReason.UNAUTHENTICATED, error, session)
            return self._reply(session, frame, Result.FAILURE)
        candidates = location_candidates(frame, wire, unit=unit, origin=session.origin)
        rejections = await self._intake.submit(candidates, source=Source.JT808)
        return self._reply(session, frame, Result.MESSAGE_ERROR if rejections else Result.SUCCESS)

    async def _reject(self, wire: bytes, reason: RejectReason, error: str, session: Session) -> None:
        key = b"" if session.unit is None else session.unit.unit_id.encode()
        candidate: Candidate = rejected(wire, reason, error, key=key, origin=session.origin)
        await self._intake.submit([candidate], source=Source.JT808)

    @staticmethod
    def _reply(session: Session, frame: Frame, result: Result) -> list[bytes]:
        return [jt808.encode_general_response_frame(frame.header, serial=session.next_serial(), result=result)]

    @staticmethod
    def _send(session: Session, frame: Frame, message_id: int, body: bytes) -> list[bytes]:
        """Replies mirror the terminal's header version and number, with the platform's own serials."""
        return jt808.encode_frames(
            message_id,
            body,
            phone=frame.header.phone,
            serial=session.next_serial(),
            protocol_version=frame.header.protocol_version,
        )


class _Watch:
    """A connection's limits on time, checked by one timer per connection instead of a timeout scope per read.

    Moving the deadline later (every read of a reporting terminal) only stores it: the timer, when it fires early,
    sleeps again until the deadline it finds. Only a deadline earlier than the timer's (a frame begun, which must be
    complete sooner) moves the timer. When it expires during a read, the connection is aborted, and the read ends
    with no data and `expired` says which limit it was; a connection waiting on Kafka is not reading, so it is not
    timed out (the intake bounds that wait itself)."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, session: Session, writer: asyncio.StreamWriter, limits: Limits
    ) -> None:
        self._loop, self._session, self._writer, self._limits = loop, session, writer, limits
        self._timer: asyncio.TimerHandle | None = None
        self._deadline, self._reason = math.inf, "idle"
        self.reading = False
        self.expired: str | None = None

    def arm(self, deadline: float, reason: str) -> None:
        """Called before each read."""
        self._deadline, self._reason, self.reading = deadline, reason, True
        if self._timer is not None and self._timer.when() <= deadline:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_at(deadline, self._fire)

    def disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _fire(self) -> None:
        self._timer = None
        if not self.reading:
            return  # the next read arms it again
        if self._loop.time() < self._deadline:
            self._timer = self._loop.call_at(self._deadline, self._fire)
            return
        self.expired = self._reason
        log.info(
            "closing %s (%s): %s",
            self._session.peer, _who(self._session), _TIMED_OUT[self._reason].format(limits=self._limits),
        )  # fmt: skip
        self._writer.transport.abort()


def _who(session: Session) -> str:
    return "unauthenticated" if session.unit is None else f"unit {session.unit.unit_id}"
