"""A PostgreSQL cluster from Debian's packages, created and owned by the project (its own port, not 5432).

Debian ships the server binaries under /usr/lib/postgresql/<major>/bin without a cluster the project can own,
so this module runs initdb into the data dir and pg_ctl against it. PostgreSQL refuses to run as root; when we
are root the cluster is created and run as the `postgres` system user the Debian package adds.
"""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from shared.errors import ConfigurationError, InfrastructureError
from shared.infra.embedded.process import port_open

log = logging.getLogger(__name__)

DATABASE = "kuaijing"
USER = "kuaijing"


def server_bindir() -> Path:
    """The newest PostgreSQL server installed from Debian's packages."""
    candidates = sorted(
        (p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "postgres").exists()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if not candidates:
        raise ConfigurationError("no PostgreSQL server found; install it with: apt-get install -y postgresql")
    return candidates[-1]


@dataclass(frozen=True, slots=True)
class EmbeddedPostgres:
    data_dir: Path
    port: int = 55432

    @property
    def home(self) -> Path:
        return self.data_dir / "postgres"

    @property
    def cluster(self) -> Path:
        return self.home / "cluster"

    @property
    def url(self) -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{DATABASE}"

    def _run_as_owner(self, argv: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        if os.geteuid() == 0:
            if shutil.which("runuser") is None:
                raise ConfigurationError("running as root needs runuser (util-linux) to start PostgreSQL")
            argv = ["runuser", "-u", "postgres", "--", *argv]
        return subprocess.run(argv, capture_output=True, text=True, check=check, cwd="/")

    def _chown_to_owner(self, path: Path) -> None:
        if os.geteuid() != 0:
            return
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError as e:
            raise ConfigurationError("the postgres system user is missing; apt-get install -y postgresql") from e
        for p in [path, *path.rglob("*")]:
            os.chown(p, owner.pw_uid, owner.pw_gid)

    def start(self) -> bool:
        """Create the cluster if needed and start it unless already serving; True when this call started it."""
        if port_open("127.0.0.1", self.port):
            log.info("PostgreSQL already serving on 127.0.0.1:%s, reusing it", self.port)
            self._ensure_database()
            return False
        bindir = server_bindir()
        self.home.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            # The data dir's parents must be traversable by the postgres user.
            for parent in [self.home, *self.home.parents]:
                if parent == Path("/"):
                    break
                parent.chmod(parent.stat().st_mode | 0o011)
        self._chown_to_owner(self.home)
        if not (self.cluster / "PG_VERSION").exists():
            log.info("creating PostgreSQL cluster in %s", self.cluster)
            self._run_as_owner(
                [
                    str(bindir / "initdb"),
                    "-D",
                    str(self.cluster),
                    "-U",
                    USER,
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--locale=C.UTF-8",
                ]
            )
            with (self.cluster / "postgresql.conf").open("a") as conf:
                conf.write(
                    "\n# kuaijing embedded defaults\n"
                    "listen_addresses = '127.0.0.1'\n"
                    f"unix_socket_directories = '{self.home}'\n"
                    "max_connections = 200\n"
                    "shared_buffers = 256MB\n"
                    "synchronous_commit = on\n"
                    "fsync = on\n"
                )
        result = self._run_as_owner(
            [
                str(bindir / "pg_ctl"),
                "-D",
                str(self.cluster),
                "-l",
                str(self.home / "server.log"),
                "-o",
                f"-p {self.port}",
                "-w",
                "-t",
                "60",
                "start",
            ],
            check=False,
        )
        if result.returncode != 0:
            raise InfrastructureError(f"PostgreSQL did not start: {result.stderr.strip()}\n{self._log_tail()}")
        self._wait_ready()
        self._ensure_database()
        log.info("PostgreSQL ready on 127.0.0.1:%s (%s)", self.port, self.cluster)
        return True

    def stop(self, mode: Literal["fast", "immediate"] = "fast") -> None:
        """`fast` lets sessions end cleanly; `immediate` is a crash as far as the data is concerned (recovery from
        the WAL on the next start), which is what the fault tests use."""
        if not (self.cluster / "postmaster.pid").exists():
            return
        self._run_as_owner(
            [str(server_bindir() / "pg_ctl"), "-D", str(self.cluster), "-m", mode, "-w", "stop"],
            check=False,
        )

    def _wait_ready(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if port_open("127.0.0.1", self.port):
                return
            time.sleep(0.1)
        raise InfrastructureError(f"PostgreSQL not accepting connections on {self.port}:\n{self._log_tail()}")

    def _ensure_database(self) -> None:
        psql = [
            str(server_bindir() / "psql"),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            USER,
            "-d",
            "postgres",
        ]
        exists = self._run_as_owner(
            [*psql, "-tAc", f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'"], check=False
        )
        if exists.returncode != 0:
            raise InfrastructureError(f"cannot query PostgreSQL on {self.port}: {exists.stderr.strip()}")
        if exists.stdout.strip() != "1":
            self._run_as_owner([*psql, "-c", f"CREATE DATABASE {DATABASE}"])

    def _log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join((self.home / "server.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server.log)"
