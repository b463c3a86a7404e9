"""Ingest's settings: its ports, limits on what a request may carry, and its consumer loops."""

from __future__ import annotations

from pydantic import Field

from shared.settings import ServiceSettings


class IngestSettings(ServiceSettings):
    port: int = Field(default=8081, validation_alias="KUAIJING_INGEST_PORT")
    pool_size: int = Field(default=8, gt=0, validation_alias="KUAIJING_INGEST_POOL_SIZE")
    jt808_port: int = 6808
    jt808_enabled: bool = True
    jt808_idle_timeout_s: float = Field(default=180.0, gt=0, description="close a terminal silent this long")
    jt808_read_limit_bytes: int = Field(default=1 << 20, gt=0, description="buffer of one terminal connection")
    jt808_max_sessions: int = Field(default=20_000, gt=0, description="terminal connections at once; more are closed")
    jt808_auth_timeout_s: float = Field(
        default=30.0, gt=0, description="close a connection that has not authenticated this long after it opened"
    )
    jt808_frame_timeout_s: float = Field(default=30.0, gt=0, description="close a connection whose frame is this slow")
    jt808_max_discarded_bytes: int = Field(
        default=16 * 1024, gt=0, description="junk and over-long frames a connection may send before it is closed"
    )
    jt808_max_failed_logins: int = Field(
        default=3, gt=0, description="refused registrations and authentications before a connection is closed"
    )
    max_future_skew_s: float = 300.0
    publish_timeout_s: float = Field(
        default=5.0, gt=0, description="longest wait for Kafka's acknowledgement before a sender is told to retry"
    )
    max_batch_items: int = 10_000
    max_body_bytes: int = 8 * 1024 * 1024
    registry_poll_s: float = Field(default=1.0, gt=0, description="how often ingest checks for registry changes")
    history_writer_enabled: bool = True
    history_group: str = Field(default="kuaijing-history", description="consumer group of the history writer")
    raw_consumer_enabled: bool = True
    raw_group: str = Field(default="kuaijing-ingest-raw", description="consumer group of the raw-telemetry consumer")
