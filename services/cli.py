"""The `kuaijing` command: run the whole system, one service, the embedded infrastructure, or registry imports."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
from pydantic import ValidationError

from services.analytics.settings import AnalyticsSettings
from services.compare import compare, render
from services.demo import DemoSettings
from services.dispatcher.adapters.store import PostgresDispatchStore
from services.dispatcher.domain.eta import CircuityEta
from services.dispatcher.domain.eta_backtest import backtest
from services.dispatcher.domain.speed_profiles import Trip
from services.dispatcher.domain.zones import ZoneMap
from services.dispatcher.settings import DispatcherSettings
from services.ingest.settings import IngestSettings
from services.simulator.city import DEFAULT_CITY, City
from shared.contract.registry import RegistryImport
from shared.contract.roles import generate_api_tokens
from shared.documents import read_document
from shared.errors import KuaijingError
from shared.infra.embedded.kafka import EmbeddedKafka
from shared.infra.embedded.postgres import EmbeddedPostgres
from shared.infra.embedded.process import bindable, dying_with, listener_of
from shared.infra.kafka import ensure_topics
from shared.infra.postgres import connect, migrate
from shared.infra.registry_store import import_registry
from shared.settings import CommonSettings, ServiceSettings
from shared.web.service import configure_logging

log = logging.getLogger("kuaijing")

SERVICES: dict[str, type[ServiceSettings]] = {
    "ingest": IngestSettings,
    "dispatcher": DispatcherSettings,
    "analytics": AnalyticsSettings,
}
"""Every service `up` runs, each as its own process, with the class of its settings."""


@dataclass
class Infrastructure:
    """The embedded Kafka and PostgreSQL, started only where the settings name none."""

    settings: CommonSettings
    started_kafka: EmbeddedKafka | None = None
    started_postgres: EmbeddedPostgres | None = None

    def start(self) -> None:
        data_dir = self.settings.data_dir
        if self.settings.database_url is None:
            postgres = EmbeddedPostgres(data_dir, port=self.settings.embedded_postgres_port)
            if postgres.start():
                self.started_postgres = postgres
        if self.settings.kafka_bootstrap is None:
            kafka = EmbeddedKafka(
                data_dir, port=self.settings.embedded_kafka_port, controller_port=self.settings.embedded_kafka_port + 1
            )
            if kafka.start():
                self.started_kafka = kafka
        created = asyncio.run(ensure_topics(self.settings.kafka_client))
        applied = asyncio.run(migrate(self.settings.database))
        print(f"kafka      ready  {self.settings.kafka}  (topics created: {len(created)})", flush=True)
        print(f"postgres   ready  {self.settings.database}  (migrations applied: {len(applied)})", flush=True)

    def stop(self) -> None:
        if self.started_kafka is not None:
            log.info("stopping the embedded Kafka")
            self.started_kafka.stop()
        if self.started_postgres is not None:
            log.info("stopping the embedded PostgreSQL")
            self.started_postgres.stop()


def _service_port(service: str) -> int:
    """The port a service will listen on, from its own settings (`KUAIJING_<SERVICE>_PORT`)."""
    return SERVICES[service]().port


def _ports_to_take() -> dict[int, str]:
    """Every port the services of `up` will listen on, with the variable that moves it."""
    ports = {_service_port(service): f"KUAIJING_{service.upper()}_PORT" for service in SERVICES}
    ingest = IngestSettings()
    if ingest.jt808_enabled:
        ports[ingest.jt808_port] = "KUAIJING_JT808_PORT"
    return ports


def _check_ports_free(host: str) -> None:
    """Stops `up` before it starts anything when a port it needs is taken (a stale service of an earlier run, say),
    naming the port and, where it can tell, the process holding it."""
    for port, variable in _ports_to_take().items():
        if not bindable(host, port):
            holder = listener_of(port) or "another process"
            raise KuaijingError(f"port {port} is taken by {holder}; stop it, or move this service with {variable}")


def cmd_up(_args: argparse.Namespace) -> int:
    return _run_system(simulation=None, stop_after_simulation=False)


def cmd_demo(args: argparse.Namespace) -> int:
    demo = DemoSettings()
    City.load(args.city)
    environment = demo.environment(dict(os.environ)) | {"KUAIJING_CITY_FILE": str(args.city.resolve())}
    os.environ.clear()
    os.environ.update(environment)
    _check_ports_free(CommonSettings().bind_host)
    _clear_demo_data(demo)
    print(f"demo: a simulated city in {demo.data_dir} (never the data or ports `kuaijing up` uses)", flush=True)
    simulation = [
        "--call-every",
        str(args.call_every),
        "--seed",
        str(args.seed),
        "--speedup",
        str(args.speedup),
        "--hours",
        str(args.hours),
        "--city",
        str(args.city),
        "--from",
        args.from_,
    ]
    simulation += ["--record", str(args.record)] if args.record else []  # fmt: skip
    simulation += ["--follow-advice"] if args.follow_advice else []
    return _run_system(simulation=simulation, stop_after_simulation=args.stop_after_night)


def _clear_demo_data(demo: DemoSettings) -> None:
    """Every demo starts from an empty city: a night replays the same hours of the same day, which a broker and
    database that already hold them would not take again. Whatever a killed demo left running goes first."""
    kafka = EmbeddedKafka(demo.data_dir, port=demo.kafka_port, controller_port=demo.kafka_port + 1)
    postgres = EmbeddedPostgres(demo.data_dir, port=demo.postgres_port)
    kafka.stop()
    postgres.stop()
    for home in (kafka.home, postgres.home):
        if home.exists():
            shutil.rmtree(home)
            print(f"demo: cleared the last demo's data in {home}", flush=True)


def _run_system(*, simulation: list[str] | None, stop_after_simulation: bool) -> int:
    """The system in the foreground: infrastructure, services, and with `simulation` (its arguments) a simulated
    night played against them; with `stop_after_simulation` everything stops when the night is over, with its
    exit code."""
    env_tokens = os.environ.get("KUAIJING_API_TOKENS")
    if not env_tokens:
        os.environ["KUAIJING_API_TOKENS"] = generate_api_tokens()
    settings = CommonSettings()
    configure_logging(settings.log_level)
    stopping = False

    def request_stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    infra = Infrastructure(settings)
    children: dict[str, subprocess.Popen[bytes]] = {}
    owner = dying_with(os.getpid())
    try:
        _check_ports_free(settings.bind_host)
        infra.start()
        env = {
            **os.environ,
            "KUAIJING_KAFKA_BOOTSTRAP": settings.kafka,
            "KUAIJING_DATABASE_URL": settings.database,
        }
        for service in SERVICES:
            children[service] = subprocess.Popen(
                [sys.executable, "-m", "services.cli", "serve", service], env=env, preexec_fn=owner
            )
        for service in SERVICES:
            _wait_ready(service, _service_port(service), children[service], settings.bind_host)
        if simulation is not None:
            children["simulation"] = subprocess.Popen(
                [sys.executable, "-m", "services.cli", "simulate", *simulation], env=env, preexec_fn=owner
            )
        if not env_tokens:
            print("api tokens (KUAIJING_API_TOKENS, generated for this run):", flush=True)
            for entry in os.environ["KUAIJING_API_TOKENS"].split(","):
                role, _, token = entry.partition(":")
                print(f"  {role:<10} {token}", flush=True)
        viewer = next((t for t, role in CommonSettings().tokens.items() if role.value == "viewer"), None)
        if viewer is not None:
            url = f"http://{settings.bind_host}:{_service_port('analytics')}/?token={viewer}"
            print(f"dashboard  {url}", flush=True)
        console = f"http://{settings.bind_host}:{_service_port('dispatcher')}/console/"
        print(f"console    {console}  (sign in with a dispatcher or viewer token)", flush=True)
        print("kuaijing is up; Ctrl-C stops everything", flush=True)
        outcome = 0
        while not stopping:
            for service, child in list(children.items()):
                if child.poll() is None:
                    continue
                if service == "simulation":
                    del children[service]
                    if stop_after_simulation:
                        outcome, stopping = child.returncode, True
                    elif child.returncode == 0:
                        print("the simulated night is over; the system stays up for a look around", flush=True)
                    else:
                        log.warning("the simulation exited with code %s; the services keep running", child.returncode)
                    continue
                log.error("%s exited with code %s; stopping", service, child.returncode)
                stopping, outcome = True, 1
            time.sleep(0.2)
        return outcome
    except KuaijingError as e:
        log.error("%s", e)
        return 1
    finally:
        for service, child in children.items():
            if child.poll() is None:
                log.info("stopping %s", service)
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 25
        for service, child in children.items():
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within 25 s; killing it", service)
                child.kill()
                child.wait()
        infra.stop()


def _wait_ready(service: str, port: int, child: subprocess.Popen[bytes], host: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    url = f"http://{host}:{port}/readyz"
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise KuaijingError(f"{service} exited during start-up (code {child.returncode})")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                print(f"{service:<10} ready  http://{host}:{port}  (docs: /docs)", flush=True)
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise KuaijingError(f"{service} not ready on {url} after {timeout_s} s")


def cmd_simulate(args: argparse.Namespace) -> int:
    from services.simulator.runner import Simulation, Urls, main_loop

    city = City.load(args.city)
    settings = CommonSettings()
    configure_logging(settings.log_level)
    tokens = {role.value: token for token, role in settings.tokens.items()}
    missing = {"terminal", "dispatcher", "viewer", "admin"} - set(tokens)
    if missing:
        raise KuaijingError(f"the simulation needs KUAIJING_API_TOKENS for {', '.join(sorted(missing))}")
    host = settings.bind_host
    ingest, dispatcher, analytics = (f"http://{host}:{_service_port(s)}" for s in ("ingest", "dispatcher", "analytics"))
    urls = Urls(ingest, dispatcher, analytics, jt808_port=IngestSettings().jt808_port, kafka=settings.kafka_client)
    simulation = Simulation(
        urls=urls,
        tokens=tokens,
        city=city,
        start=None if args.from_ is None else city.latest_start(args.from_, args.hours, datetime.now(UTC)),
        speedup=args.speedup,
        hours=args.hours,
        call_every_s=args.call_every,
        seed=args.seed,
        record=args.record,
        follow_advice=args.follow_advice,
    )
    return main_loop(simulation)


def cmd_serve(args: argparse.Namespace) -> int:
    main: Callable[[int | None], int] = importlib.import_module(f"services.{args.service}.app").main
    return main(args.port)


def cmd_infra(args: argparse.Namespace) -> int:
    settings = CommonSettings()
    configure_logging(settings.log_level)
    kafka = EmbeddedKafka(
        settings.data_dir, port=settings.embedded_kafka_port, controller_port=settings.embedded_kafka_port + 1
    )
    postgres = EmbeddedPostgres(settings.data_dir, port=settings.embedded_postgres_port)
    if args.action == "start":
        Infrastructure(settings).start()
    elif args.action == "stop":
        kafka.stop()
        postgres.stop()
        print("embedded Kafka and PostgreSQL stopped", flush=True)
    else:
        print(f"data dir  {settings.data_dir}")
        print(f"kafka     {'running pid ' + str(kafka.running_pid()) if kafka.running_pid() else 'stopped'}")
        pg_running = (postgres.cluster / "postmaster.pid").exists()
        print(f"postgres  {'running' if pg_running else 'stopped'} ({postgres.url})")
    return 0


def cmd_health(_args: argparse.Namespace) -> int:
    """The container health check: the service this process runs answers `/healthz` on its port (one container
    runs one service, so whichever of the three ports answers is it)."""
    host = "127.0.0.1"
    for service in SERVICES:
        try:
            if httpx.get(f"http://{host}:{_service_port(service)}/healthz", timeout=2).status_code == 200:
                print(f"{service} healthy")
                return 0
        except httpx.HTTPError:
            continue
    print("no Kuaijing service answers /healthz here", file=sys.stderr)
    return 1


def cmd_migrate(_args: argparse.Namespace) -> int:
    settings = CommonSettings()
    configure_logging(settings.log_level)
    applied = asyncio.run(migrate(settings.database))
    print(f"applied {len(applied)} migration(s): {applied}" if applied else "schema is up to date")
    return 0


def cmd_registry_import(args: argparse.Namespace) -> int:
    settings = CommonSettings()
    configure_logging(settings.log_level)
    document = read_document(args.file, RegistryImport, what="a registry document")

    async def run() -> dict[str, int]:
        await migrate(settings.database)
        conn = await connect(settings.database)
        try:
            return await import_registry(conn, document)
        finally:
            await conn.close()

    counts = asyncio.run(run())
    print(f"imported {counts['platforms']} platforms, {counts['units']} units, {counts['zones']} zones")
    return 0


def cmd_eta_backtest(args: argparse.Namespace) -> int:
    settings = DispatcherSettings()
    configure_logging(settings.log_level)
    since = datetime.now(UTC) - timedelta(days=args.days)

    async def read() -> tuple[list[Trip], ZoneMap]:
        await migrate(settings.database)
        pool = await asyncpg.create_pool(settings.database, min_size=1, max_size=1)
        try:
            store = PostgresDispatchStore(pool)
            return await store.completed_trips(since=since), ZoneMap(await store.zone_definitions())
        finally:
            await pool.close()

    trips, zones = asyncio.run(read())
    result = backtest(
        trips,
        configured=CircuityEta(circuity=settings.eta_circuity),
        zone_class_of=lambda point: zones.classify(lat=point[0], lon=point[1]),
        test_share=args.test_share,
        shuffle_seed=args.shuffle,
    )
    tested = (
        f"drawn at random (seed {args.shuffle})"
        if args.shuffle is not None
        else f"from {result.split_at:%Y-%m-%d %H:%M:%S} UTC on"
    )
    print(
        f"{len(trips)} drives to calls ended on scene since {since:%Y-%m-%d %H:%M} UTC; learned from "
        f"{result.trained_on}, tested on {result.tested_on} {tested} ({result.left_out} left out: fewer than two "
        f"fixes); speed profiles in {result.cells} H3 cells"
    )
    print(f"{'model':<12}{'drives':>8}{'median |error|':>17}{'p90 |error|':>14}{'median error':>15}")
    for m in result.models:
        print(f"{m.model:<12}{m.trips:>8}{m.median_abs_s:>15.1f} s{m.p90_abs_s:>12.1f} s{m.median_s:>+13.1f} s")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    city = City.load(args.city)
    start = city.latest_start(args.from_, args.hours, datetime.now(UTC))
    started = time.monotonic()
    print(
        f"compare: {city.name}, {args.hours:g} h from {args.from_} city time (the night starting "
        f"{start:%Y-%m-%d %H:%M} UTC), seed {args.seed}, a call every {args.call_every:g} s on average; "
        f"history: the same evening of the {args.training_weeks} weeks before",
        flush=True,
    )
    comparison = compare(
        city,
        start=start,
        hours=args.hours,
        call_every_s=args.call_every,
        seed=args.seed,
        training_weeks=args.training_weeks,
        level=args.level,
        progress=lambda line: print(f"  [{time.monotonic() - started:5.1f} s] {line}", flush=True),
    )
    print(
        f"{comparison.calls} calls in each run; learned ETA from {comparison.training_drives} drives "
        f"({comparison.profile_cells} cells); move-up when key areas or the central city fall below "
        f"{args.level:.0%} covered"
    )
    print(render(comparison))
    return 0


def _share(text: str) -> float:
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a share between 0 and 1")
    return value


def cmd_contract(args: argparse.Namespace) -> int:
    from services.published import PUBLISHED, stale_documents, write_documents

    if args.check:
        stale = stale_documents()
        if stale:
            print(f"out of date under {PUBLISHED} (run `kuaijing contract`): {', '.join(stale)}", file=sys.stderr)
            return 1
        print(f"{PUBLISHED}: current")
        return 0
    changed = write_documents()
    print(f"{PUBLISHED}: {len(changed)} file(s) written" + (f": {', '.join(changed)}" if changed else ""))
    return 0


def _time_of_day(text: str) -> str:
    hour, _, minute = text.partition(":")
    if not (hour.isdigit() and minute.isdigit() and int(hour) < 24 and int(minute) < 60 and len(minute) == 2):
        raise argparse.ArgumentTypeError(f"{text!r} is not a time of day as HH:MM")
    return f"{int(hour):02d}:{minute}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kuaijing",
        description="Kuaijing (快警): police rapid response. Configuration comes from KUAIJING_* environment "
        "variables (see README); unset Kafka/PostgreSQL settings mean the embedded ones under KUAIJING_DATA_DIR.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = commands.add_parser(
        "up", help="start the whole system in the foreground, with no simulated data; Ctrl-C stops it"
    )
    up.set_defaults(func=cmd_up)

    demo = commands.add_parser(
        "demo",
        help="the whole system and a simulated city, in a data directory and on ports of their own "
        "(KUAIJING_DEMO_DATA_DIR, default ~/.local/share/kuaijing-demo; ingest 18081, dispatcher 18082, analytics "
        "18083, JT/T 808 16808, Kafka 19092, PostgreSQL 55433; KUAIJING_DEMO_*_PORT moves them)",
    )
    simulate = commands.add_parser(
        "simulate", help="drive a simulated city (vehicles, 110 calls, arrivals) against services already running"
    )
    for command in (demo, simulate):
        command.add_argument(
            "--hours", type=float, default=2.0, metavar="H", help="simulated hours of the night (default 2)"
        )
        command.add_argument(
            "--speedup", type=float, default=60.0, metavar="N", help="simulated seconds per real second (default 60)"
        )
        command.add_argument(
            "--call-every", type=float, default=30.0, metavar="S", help="mean simulated seconds between 110 calls"
        )
        command.add_argument("--seed", type=int, default=1, help="the same seed plays the same night (default 1)")
        command.add_argument("--record", type=Path, metavar="FILE", help="write every call and the report as JSON")
        command.add_argument(
            "--city",
            type=Path,
            default=DEFAULT_CITY,
            metavar="FILE",
            help="the city file: platforms, zones, streets, call areas (default: the modelled Shaoyang; format in "
            "the README)",
        )
        command.add_argument(
            "--follow-advice",
            action="store_true",
            help="the operator also moves idle vehicles up as the dispatcher advises (GET /v1/advice); the night "
            "then depends on when advice arrives and no longer replays exactly",
        )
    demo.add_argument(
        "--from",
        dest="from_",
        default="18:00",
        type=_time_of_day,
        metavar="HH:MM",
        help="the night starts at this time of the city's day, on the last day it has ended (default 18:00, so the "
        "evening rush hour is in it); the same --from and --seed play the same night",
    )
    simulate.add_argument(
        "--from",
        dest="from_",
        type=_time_of_day,
        metavar="HH:MM",
        help="start the night at this time of the city's day, on the last day it has ended (the services must "
        "judge in event time, KUAIJING_CLOCK=event); default: the night ends now",
    )
    demo.add_argument(
        "--stop-after-night", action="store_true", help="stop everything once the night is played and reported"
    )
    demo.set_defaults(func=cmd_demo)
    simulate.set_defaults(func=cmd_simulate)

    serve = commands.add_parser("serve", help="run one service in the foreground")
    serve.add_argument("service", choices=list(SERVICES))
    serve.add_argument("--port", type=int, help="override the service's KUAIJING_*_PORT")
    serve.set_defaults(func=cmd_serve)

    infra = commands.add_parser("infra", help="the embedded Kafka and PostgreSQL")
    infra.add_argument("action", choices=("start", "stop", "status"))
    infra.set_defaults(func=cmd_infra)

    health = commands.add_parser("health", help="exit 0 when a service of this host answers /healthz (for containers)")
    health.set_defaults(func=cmd_health)

    mig = commands.add_parser("migrate", help="apply pending database migrations")
    mig.set_defaults(func=cmd_migrate)

    registry = commands.add_parser("registry", help="the unit registry")
    registry_commands = registry.add_subparsers(dest="registry_command", required=True, metavar="ACTION")
    imp = registry_commands.add_parser(
        "import",
        help="upsert platforms, units and zones from a JSON file shaped like POST /v1/registry/import",
    )
    imp.add_argument("file", type=Path)
    imp.set_defaults(func=cmd_registry_import)
    eta = commands.add_parser("eta", help="the dispatcher's ETA models")
    eta_commands = eta.add_subparsers(dest="eta_command", required=True, metavar="ACTION")
    back = eta_commands.add_parser(
        "backtest",
        help="predicted against actual travel time of the drives to calls that ended on scene, for the configured "
        "and the learned model side by side (the learned one built from the earlier drives only)",
    )
    back.add_argument(
        "--days", type=float, default=28.0, metavar="D", help="drives dispatched in the last D days (default 28)"
    )
    back.add_argument(
        "--test-share",
        type=_share,
        default=0.3,
        metavar="F",
        help="the latest share of drives to test on; the model learns from the rest (default 0.3)",
    )
    back.add_argument(
        "--shuffle",
        type=int,
        metavar="SEED",
        help="test on drives drawn at random instead of the latest, so both halves hold the same hours",
    )
    back.set_defaults(func=cmd_eta_backtest)

    comp = commands.add_parser(
        "compare",
        help="play the same seeded night of the simulated city three times: (a) nearest by straight line, (b) best "
        "ETA by the configured model, (c) best ETA by the learned model with move-up; print the share of calls "
        "within target and p50/p90 response per zone class, side by side",
    )
    comp.add_argument("--hours", type=float, default=2.0, metavar="H", help="simulated hours (default 2)")
    comp.add_argument("--from", dest="from_", default="18:00", type=_time_of_day, metavar="HH:MM",
                      help="the night starts at this time of the city's day (default 18:00)")  # fmt: skip
    comp.add_argument("--seed", type=int, default=1, help="the same seed plays the same calls (default 1)")
    comp.add_argument("--call-every", type=float, default=30.0, metavar="S", help="mean seconds between calls")
    comp.add_argument("--city", type=Path, default=DEFAULT_CITY, metavar="FILE", help="the city file")
    comp.add_argument("--training-weeks", type=int, default=3, metavar="N",
                      help="the learned ETA's history: the same evening of the N weeks before (default 3)")  # fmt: skip
    comp.add_argument("--level", type=_share, default=0.8, metavar="F",
                      help="move-up is advised when a class falls below this share covered (default 0.8)")  # fmt: skip
    comp.set_defaults(func=cmd_compare)
    contract = commands.add_parser(
        "contract",
        help="write the published contract (AsyncAPI, JSON Schemas, OpenAPI) under shared/contract/published/",
    )
    contract.add_argument("--check", action="store_true", help="only check that the files are current (exit 1 if not)")
    contract.set_defaults(func=cmd_contract)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result: int = args.func(args)
        return result
    except KuaijingError as e:
        print(f"kuaijing: {e}", file=sys.stderr)
        return 1
    except ValidationError as e:
        print(f"kuaijing: bad configuration:\n{e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
