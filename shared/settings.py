"""The settings every Kuaijing process shares, read once from `KUAIJING_*` environment variables.

Each service adds its own in `services/<name>/settings.py`; the README's table lists them all.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.contract.roles import Role, parse_api_tokens
from shared.errors import ConfigurationError
from shared.infra.kafka import KafkaClient, SaslMechanism, SecurityProtocol

EMBEDDED_KAFKA_PORT = 9092
EMBEDDED_POSTGRES_PORT = 55432


def _default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "kuaijing"


class CommonSettings(BaseSettings):
    """Fails fast on a bad value: a service that starts must be able to run."""

    model_config = SettingsConfigDict(env_prefix="KUAIJING_", frozen=True, extra="ignore", populate_by_name=True)

    kafka_bootstrap: str | None = Field(
        default=None, description="host:port[,host:port]; unset means the embedded broker"
    )
    kafka_security_protocol: SecurityProtocol = Field(
        default="PLAINTEXT", description="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"
    )
    kafka_sasl_mechanism: SaslMechanism = Field(default="SCRAM-SHA-512", description="with SASL_*: SCRAM or PLAIN")
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = Field(default=None, description="PEM of the CA that signed the brokers")
    kafka_ssl_certfile: Path | None = Field(default=None, description="PEM client certificate, for mutual TLS")
    kafka_ssl_keyfile: Path | None = Field(default=None, description="PEM key of the client certificate")
    database_url: str | None = Field(default=None, description="postgresql://...; unset means embedded")
    api_tokens: str = Field(default="", description="role:token,role:token")
    data_dir: Path = Field(default_factory=_default_data_dir)
    bind_host: str = "127.0.0.1"
    embedded_kafka_port: int = EMBEDDED_KAFKA_PORT
    embedded_postgres_port: int = EMBEDDED_POSTGRES_PORT
    consumer_poll_ms: int = Field(default=200, gt=0, description="longest wait of a consumer poll with nothing new")
    history_batch_size: int = Field(default=5_000, gt=0, description="records per consumer batch")
    shutdown_timeout_s: float = Field(default=20.0, gt=0, description="longest graceful stop on SIGTERM")
    gc_young_threshold: int = Field(
        default=50_000, ge=700, description="new container objects between young collections (Python's own: 700)"
    )
    max_in_flight: int = Field(default=256, gt=0, description="requests in a service's handlers at once")
    admission_wait_s: float = Field(
        default=1.0, gt=0, description="longest wait for a free slot before a request is answered 503"
    )
    log_level: str = "INFO"

    @field_validator("api_tokens")
    @classmethod
    def _tokens_parse(cls, value: str) -> str:
        try:
            parse_api_tokens(value)
        except ConfigurationError as e:
            raise ValueError(str(e)) from e
        return value

    @cached_property
    def tokens(self) -> dict[str, Role]:
        return parse_api_tokens(self.api_tokens)

    @property
    def kafka(self) -> str:
        return self.kafka_bootstrap or f"127.0.0.1:{self.embedded_kafka_port}"

    @cached_property
    def kafka_client(self) -> KafkaClient:
        """`kafka` and how to authenticate to it: what every Kafka client of the process is made from."""
        return KafkaClient(
            self.kafka,
            security_protocol=self.kafka_security_protocol,
            sasl_mechanism=self.kafka_sasl_mechanism,
            username=self.kafka_sasl_username,
            password=self.kafka_sasl_password.get_secret_value() if self.kafka_sasl_password else None,
            ssl_cafile=self.kafka_ssl_cafile,
            ssl_certfile=self.kafka_ssl_certfile,
            ssl_keyfile=self.kafka_ssl_keyfile,
        )

    @property
    def database(self) -> str:
        return self.database_url or f"postgresql://kuaijing@127.0.0.1:{self.embedded_postgres_port}/kuaijing"


class ServiceSettings(CommonSettings):
    """Settings of a process that serves HTTP; each service names its own port variable."""

    port: int
    pool_size: int
