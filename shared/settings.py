"""Every setting of every Kuaijing process, read once from `KUAIJING_*` environment variables."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.contract.roles import Role, parse_api_tokens
from shared.errors import ConfigurationError

EMBEDDED_KAFKA_PORT = 9092
EMBEDDED_POSTGRES_PORT = 55432


def _default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "kuaijing"


class Settings(BaseSettings):
    """Fails fast on a bad value: a service that starts must be able to run."""

    model_config = SettingsConfigDict(env_prefix="KUAIJING_", frozen=True, extra="ignore")

    kafka_bootstrap: str | None = Field(
        default=None, description="host:port[,host:port]; unset means the embedded broker"
    )
    database_url: str | None = Field(default=None, description="postgresql://...; unset means embedded")
    api_tokens: str = Field(default="", description="role:token,role:token")
    data_dir: Path = Field(default_factory=_default_data_dir)

    ingest_port: int = 8081
    dispatcher_port: int = 8082
    analytics_port: int = 8083
    jt808_port: int = 6808
    jt808_enabled: bool = True
    jt808_idle_timeout_s: float = Field(default=180.0, gt=0, description="close a terminal silent this long")
    bind_host: str = "127.0.0.1"

    embedded_kafka_port: int = EMBEDDED_KAFKA_PORT
    embedded_postgres_port: int = EMBEDDED_POSTGRES_PORT

    max_position_age_s: float = 120.0
    max_future_skew_s: float = 300.0
    max_batch_items: int = 10_000
    max_body_bytes: int = 8 * 1024 * 1024

    registry_poll_s: float = Field(default=1.0, gt=0, description="how often ingest checks for registry changes")
    history_batch_size: int = Field(default=5_000, gt=0)
    history_writer_enabled: bool = True
    history_group: str = Field(default="kuaijing-history", description="consumer group of the history writer")
    raw_consumer_enabled: bool = True
    raw_group: str = Field(default="kuaijing-ingest-raw", description="consumer group of the raw-telemetry consumer")
    consumer_poll_ms: int = 200
    arrival_radius_m: float = Field(default=100.0, gt=0, description="GPS arrival: this close to the call")
    eta_circuity: float = Field(default=1.3, ge=1.0, description="road distance over great-circle distance")
    recommendations: int = Field(default=5, ge=1, le=50, description="units recommended with each new call")
    analytics_group: str = Field(default="kuaijing-analytics", description="consumer group of analytics")
    report_timezone: str = Field(default="Asia/Shanghai", description="where report days and weeks begin")
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

    @property
    def database(self) -> str:
        return self.database_url or f"postgresql://kuaijing@127.0.0.1:{self.embedded_postgres_port}/kuaijing"
