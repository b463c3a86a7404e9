"""A single-node KRaft Kafka broker assembled from Maven Central jars (recipe: ../shared/kafka.md).

Jars are fetched once into a cache shared by every data dir; the log directory is formatted on first start;
readiness is a real metadata request, not an open port. A broker already serving on the port is reused.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from shared.errors import ConfigurationError, InfrastructureError
from shared.infra.embedded.process import port_open, read_pid, spawn_detached, terminate
from shared.infra.kafka import describe_cluster

log = logging.getLogger(__name__)

KAFKA_VERSION = "4.3.1"
_READY_TIMEOUT_S = 90.0


def jar_cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "kuaijing" / f"kafka-{KAFKA_VERSION}" / "libs"


def ensure_jars() -> Path:
    """Copy the broker's runtime jars from Maven Central (through ~/.m2) unless the cache already holds them."""
    libs = jar_cache_dir()
    marker = libs / ".complete"
    if marker.exists():
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise ConfigurationError(
            "Maven (mvn) is needed once to fetch the Kafka jars; install it: apt-get install maven"
        )
    libs.mkdir(parents=True, exist_ok=True)
    pom = resources.files("shared.infra.embedded").joinpath("kafka-pom.xml")
    with resources.as_file(pom) as pom_path:
        log.info("fetching Kafka %s jars from Maven Central into %s", KAFKA_VERSION, libs)
        result = subprocess.run(
            [
                mvn,
                "-B",
                "-q",
                "-f",
                str(pom_path),
                "dependency:copy-dependencies",
                f"-DoutputDirectory={libs}",
                "-DincludeScope=runtime",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
    if result.returncode != 0:
        raise InfrastructureError(f"mvn could not fetch the Kafka jars:\n{result.stdout}\n{result.stderr}")
    if not any(libs.glob(f"kafka_2.13-{KAFKA_VERSION}.jar")):
        raise InfrastructureError(f"mvn finished but {libs} holds no kafka_2.13-{KAFKA_VERSION}.jar")
    marker.touch()
    return libs


def _cluster_id() -> str:
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


@dataclass(frozen=True, slots=True)
class EmbeddedKafka:
    data_dir: Path
    port: int = 9092
    controller_port: int = 9093
    heap: str = "512m"
    secure_port: int | None = None
    """A second listener, SASL_SSL with SCRAM-SHA-512, for trying the clients' security settings against a real
    broker; its certificate is self-signed (`tls_ca`) and `scram_user` is created when the log dir is formatted."""
    scram_user: tuple[str, str] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def home(self) -> Path:
        return self.data_dir / "kafka"

    @property
    def secure_bootstrap(self) -> str:
        assert self.secure_port is not None, "this broker has no SASL_SSL listener"
        return f"127.0.0.1:{self.secure_port}"

    @property
    def tls_ca(self) -> Path:
        """PEM of the secure listener's self-signed certificate: what a client trusts."""
        return self.home / "tls" / "ca.pem"

    @property
    def pid_file(self) -> Path:
        return self.home / "kafka.pid"

    @property
    def server_log(self) -> Path:
        return self.home / "logs" / "server.log"

    def running_pid(self) -> int | None:
        return read_pid(self.pid_file)

    def start(self) -> bool:
        """Start unless already serving; returns True when this call started the broker."""
        if port_open("127.0.0.1", self.port):
            asyncio.run(self._wait_ready(pid=None))
            log.info("Kafka already serving on %s, reusing it", self.bootstrap)
            return False
        libs = ensure_jars()
        java = shutil.which("java")
        if java is None:
            raise ConfigurationError("java (OpenJDK 17+) is needed for the embedded Kafka")
        (self.home / "logs").mkdir(parents=True, exist_ok=True)
        properties = self._write_config()
        classpath = f"{libs}/*"
        log_opts = [
            f"-Dlog4j2.configurationFile={self.home / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self.home / 'logs'}",
            f"-Djava.io.tmpdir={self.home / 'tmp'}",
        ]
        (self.home / "tmp").mkdir(exist_ok=True)
        if not (self.home / "data" / "meta.properties").exists():
            scram = []
            if self.scram_user is not None:
                user, password = self.scram_user
                scram = ["--add-scram", f"SCRAM-SHA-512=[name={user},password={password}]"]
            subprocess.run(
                [
                    java,
                    "-Xmx256m",
                    *log_opts,
                    "-cp",
                    classpath,
                    "kafka.tools.StorageTool",
                    "format",
                    "--standalone",
                    "-t",
                    _cluster_id(),
                    "-c",
                    str(properties),
                    "-g",
                    *scram,
                ],
                check=True,
                capture_output=True,
                text=True,
            )
        argv = [
            java,
            f"-Xms{self.heap}",
            f"-Xmx{self.heap}",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:+ExplicitGCInvokesConcurrent",
            *log_opts,
            "-cp",
            classpath,
            "kafka.Kafka",
            str(properties),
        ]
        pid = spawn_detached(argv, log_file=self.home / "logs" / "stdout.log")
        self.pid_file.write_text(str(pid))
        asyncio.run(self._wait_ready(pid=pid))
        log.info("Kafka %s ready on %s (pid %s)", KAFKA_VERSION, self.bootstrap, pid)
        return True

    def stop(self) -> None:
        pid = self.running_pid()
        if pid is not None:
            terminate(pid)
        self.pid_file.unlink(missing_ok=True)

    async def _wait_ready(self, *, pid: int | None) -> None:
        deadline = time.monotonic() + _READY_TIMEOUT_S
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if pid is not None and read_pid(self.pid_file) is None:
                raise InfrastructureError(f"Kafka exited during start-up; see {self.server_log}:\n{self._log_tail()}")
            if port_open("127.0.0.1", self.port):
                try:
                    await describe_cluster(self.bootstrap)
                    return
                except Exception as e:
                    last_error = e
            await asyncio.sleep(0.25)
        raise InfrastructureError(f"Kafka not ready after {_READY_TIMEOUT_S} s ({last_error}):\n{self._log_tail()}")

    def _log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.server_log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server.log)"

    def _write_config(self) -> Path:
        (self.home / "log4j2.properties").write_bytes(
            resources.files("shared.infra.embedded").joinpath("log4j2.properties").read_bytes()
        )
        properties = self.home / "server.properties"
        listeners = [f"PLAINTEXT://127.0.0.1:{self.port}", f"CONTROLLER://127.0.0.1:{self.controller_port}"]
        protocols = "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
        secure: list[str] = []
        if self.secure_port is not None:
            listeners.append(f"SASL_SSL://127.0.0.1:{self.secure_port}")
            protocols += ",SASL_SSL:SASL_SSL"
            secure = self._secure_listener_config()
        properties.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.bootstrap.servers=127.0.0.1:{self.controller_port}",
                    f"listeners={','.join(listeners)}",
                    f"advertised.listeners={','.join(listeners)}",
                    "inter.broker.listener.name=PLAINTEXT",
                    "controller.listener.names=CONTROLLER",
                    f"listener.security.protocol.map={protocols}",
                    f"log.dirs={self.home / 'data'}",
                    "num.partitions=1",
                    "offsets.topic.replication.factor=1",
                    "offsets.topic.num.partitions=1",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "transaction.state.log.num.partitions=1",
                    "share.coordinator.state.topic.replication.factor=1",
                    "share.coordinator.state.topic.min.isr=1",
                    "group.initial.rebalance.delay.ms=0",
                    "auto.create.topics.enable=false",
                    *secure,
                    "",
                ]
            )
        )
        return properties

    def _secure_listener_config(self) -> list[str]:
        """A self-signed certificate for 127.0.0.1 (made once with the JDK's keytool) and SCRAM on the listener."""
        tls = self.home / "tls"
        keystore, password = tls / "broker.p12", "kuaijing-embedded"
        if not keystore.exists():
            tls.mkdir(parents=True, exist_ok=True)
            keytool = shutil.which("keytool")
            if keytool is None:
                raise ConfigurationError("keytool (part of OpenJDK) is needed for the embedded broker's TLS listener")
            common = ["-keystore", str(keystore), "-storepass", password, "-alias", "broker"]
            subprocess.run(
                [keytool, "-genkeypair", *common, "-keyalg", "RSA", "-keysize", "2048", "-storetype", "PKCS12",
                 "-dname", "CN=localhost", "-ext", "SAN=ip:127.0.0.1,dns:localhost", "-validity", "3650"],
                check=True, capture_output=True,
            )  # fmt: skip
            subprocess.run(
                [keytool, "-exportcert", "-rfc", *common, "-file", str(self.tls_ca)], check=True, capture_output=True
            )
        return [
            f"ssl.keystore.location={keystore}",
            f"ssl.keystore.password={password}",
            "ssl.keystore.type=PKCS12",
            "sasl.enabled.mechanisms=SCRAM-SHA-512",
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config="
            "org.apache.kafka.common.security.scram.ScramLoginModule required;",
        ]
