"""The dispatcher's settings: its port, the dispatch rules and how it follows the topics."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from shared.settings import ServiceSettings


class DispatcherSettings(ServiceSettings):
    port: int = Field(default=8082, validation_alias="KUAIJING_DISPATCHER_PORT")
    pool_size: int = Field(default=10, gt=0, validation_alias="KUAIJING_DISPATCHER_POOL_SIZE")
    ready_timeout_s: float = Field(
        default=120.0, gt=0, validation_alias="KUAIJING_DISPATCHER_READY_TIMEOUT_S",
        description="longest catch-up of the positions tail before start-up fails",
    )  # fmt: skip
    max_position_age_s: float = 120.0
    arrival_radius_m: float = Field(default=100.0, gt=0, description="GPS arrival: this close to the call")
    eta_circuity: float = Field(default=1.3, ge=1.0, description="road distance over great-circle distance")
    eta_model: Literal["configured", "learned"] = Field(
        default="learned",
        description="rank units by the configured model (circuity and speeds per kind and zone class), or by speed "
        "profiles learned from the fleet's drives to calls, falling back to the configured model where they are thin",
    )
    eta_history_days: float = Field(default=28.0, gt=0, description="the learned ETA's window of drives to calls")
    move_up: bool = Field(default=True, description="advise move-ups after dispatches (kuaijing.advice)")
    move_up_level: float = Field(
        default=0.8, ge=0, le=1, description="advise when the key areas or the central city fall below this covered"
    )
    coverage_every_s: float = Field(default=10.0, gt=0, description="how often coverage of the zones is measured")
    coverage_sample_s: float = Field(
        default=60.0, gt=0, description="coverage is kept for reports at instants this far apart on the service's clock"
    )
    eta_relearn_s: float = Field(default=3600.0, gt=0, description="how often the learned ETA is rebuilt")
    recommendations: int = Field(default=5, ge=1, le=50, description="units recommended with each new call")
    registry_poll_s: float = Field(default=1.0, gt=0, description="how often the live map checks the registry")
    clock: Literal["wall", "event"] = Field(
        default="wall",
        description="what 'now' is for freshness and default timestamps: the wall clock, or the newest fix on the "
        "live map (for replays and `kuaijing demo`, whose simulated nights run in the past, faster than real time)",
    )
    city_file: Path | None = Field(
        default=None,
        description="a city file (README: The city file) whose streets the console draws and whose places it offers "
        "as addresses; `kuaijing demo` sets it to the demo's city",
    )
    history_group: str = Field(
        default="kuaijing-history", description="the history writer's group: the positions tail starts at its offsets"
    )
