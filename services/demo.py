"""The world `kuaijing demo` runs in: a data directory and ports of its own, apart from those `up` uses, so a
simulated night never lands in a real deployment's broker, database or reports."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

_REAL_INFRASTRUCTURE = (
    "KUAIJING_KAFKA_BOOTSTRAP",
    "KUAIJING_DATABASE_URL",
    "KUAIJING_KAFKA_SECURITY_PROTOCOL",
    "KUAIJING_KAFKA_SASL_USERNAME",
    "KUAIJING_KAFKA_SASL_PASSWORD",
)
"""Settings that would point the demo at a real broker or database: the demo never reads them."""


def _default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "kuaijing-demo"


class DemoSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KUAIJING_DEMO_", frozen=True, extra="ignore")

    data_dir: Path = Field(default_factory=_default_data_dir, description="the demo's Kafka and PostgreSQL data")
    kafka_port: int = 19092
    postgres_port: int = 55433
    ingest_port: int = 18081
    dispatcher_port: int = 18082
    analytics_port: int = 18083
    jt808_port: int = 16808

    def environment(self, current: dict[str, str]) -> dict[str, str]:
        """`current` with the demo's own embedded infrastructure and ports in place of whatever `up` would use."""
        kept = {k: v for k, v in current.items() if k not in _REAL_INFRASTRUCTURE}
        return kept | {
            "KUAIJING_DATA_DIR": str(self.data_dir),
            "KUAIJING_EMBEDDED_KAFKA_PORT": str(self.kafka_port),
            "KUAIJING_EMBEDDED_POSTGRES_PORT": str(self.postgres_port),
            "KUAIJING_INGEST_PORT": str(self.ingest_port),
            "KUAIJING_DISPATCHER_PORT": str(self.dispatcher_port),
            "KUAIJING_ANALYTICS_PORT": str(self.analytics_port),
            "KUAIJING_JT808_PORT": str(self.jt808_port),
            "KUAIJING_CLOCK": "event",
            # A simulated hour passes in a minute at the default speed-up: the learned ETA follows the night.
            "KUAIJING_ETA_RELEARN_S": "60",
        }
