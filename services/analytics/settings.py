"""Analytics' settings: its port, its consumer group, where report days begin and how fresh the dashboard is."""

from __future__ import annotations

from pydantic import Field

from shared.settings import ServiceSettings


class AnalyticsSettings(ServiceSettings):
    port: int = Field(default=8083, validation_alias="KUAIJING_ANALYTICS_PORT")
    pool_size: int = Field(default=8, gt=0, validation_alias="KUAIJING_ANALYTICS_POOL_SIZE")
    analytics_group: str = Field(default="kuaijing-analytics", description="consumer group of analytics")
    dashboard_max_age_s: float = Field(
        default=10.0, ge=0, description="age at which the dashboard's shared snapshot is taken again"
    )
    report_timezone: str = Field(default="Asia/Shanghai", description="where report days and weeks begin")
