from pathlib import Path

import pytest
from pydantic import ValidationError

from services.analytics.settings import AnalyticsSettings
from services.dispatcher.settings import DispatcherSettings
from services.ingest.settings import IngestSettings
from shared.contract.roles import Role
from shared.settings import CommonSettings


def test_defaults_follow_the_contract(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("KUAIJING_KAFKA_BOOTSTRAP", "KUAIJING_DATABASE_URL", "KUAIJING_INGEST_PORT", "KUAIJING_JT808_PORT"):
        monkeypatch.delenv(var, raising=False)
    settings = CommonSettings()
    assert settings.kafka == "127.0.0.1:9092"
    assert settings.database == "postgresql://kuaijing@127.0.0.1:55432/kuaijing"
    ingest, dispatcher, analytics = IngestSettings(), DispatcherSettings(), AnalyticsSettings()
    assert (ingest.port, dispatcher.port, analytics.port, ingest.jt808_port) == (8081, 8082, 8083, 6808)
    assert dispatcher.max_position_age_s == 120


def test_each_service_reads_its_own_port_and_pool_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUAIJING_INGEST_PORT", "9001")
    monkeypatch.setenv("KUAIJING_DISPATCHER_POOL_SIZE", "3")
    monkeypatch.setenv("KUAIJING_KAFKA_BOOTSTRAP", "broker:29092")
    assert (IngestSettings().port, DispatcherSettings().port, AnalyticsSettings().port) == (9001, 8082, 8083)
    assert (IngestSettings().pool_size, DispatcherSettings().pool_size) == (8, 3)
    assert AnalyticsSettings().kafka == "broker:29092"


def test_settings_come_from_kuaijing_environment_variables(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KUAIJING_KAFKA_BOOTSTRAP", "broker:29092")
    monkeypatch.setenv("KUAIJING_API_TOKENS", "viewer:v1")
    monkeypatch.setenv("KUAIJING_DATA_DIR", str(tmp_path))
    settings = CommonSettings()
    assert settings.kafka == "broker:29092"
    assert settings.tokens == {"v1": Role.VIEWER}
    assert settings.data_dir == tmp_path


def test_a_malformed_token_list_fails_at_start_up() -> None:
    with pytest.raises(ValidationError, match="KUAIJING_API_TOKENS"):
        CommonSettings(api_tokens="superuser:abc")


def test_a_malformed_service_variable_names_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUAIJING_ANALYTICS_PORT", "eighty")
    with pytest.raises(ValidationError, match="KUAIJING_ANALYTICS_PORT"):
        AnalyticsSettings()
