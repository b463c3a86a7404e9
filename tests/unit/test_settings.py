from pathlib import Path

import pytest
from pydantic import ValidationError

from shared.contract.roles import Role
from shared.settings import Settings


def test_defaults_follow_the_contract(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("KUAIJING_KAFKA_BOOTSTRAP", "KUAIJING_DATABASE_URL", "KUAIJING_INGEST_PORT"):
        monkeypatch.delenv(var, raising=False)
    settings = Settings()
    assert settings.kafka == "127.0.0.1:9092"
    assert settings.database == "postgresql://kuaijing@127.0.0.1:55432/kuaijing"
    assert (settings.ingest_port, settings.dispatcher_port, settings.analytics_port, settings.jt808_port) == (
        8081, 8082, 8083, 6808,
    )  # fmt: skip
    assert settings.max_position_age_s == 120


def test_settings_come_from_kuaijing_environment_variables(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KUAIJING_KAFKA_BOOTSTRAP", "broker:29092")
    monkeypatch.setenv("KUAIJING_API_TOKENS", "viewer:v1")
    monkeypatch.setenv("KUAIJING_DATA_DIR", str(tmp_path))
    settings = Settings()
    assert settings.kafka == "broker:29092"
    assert settings.tokens == {"v1": Role.VIEWER}
    assert settings.data_dir == tmp_path


def test_a_malformed_token_list_fails_at_start_up() -> None:
    with pytest.raises(ValidationError, match="KUAIJING_API_TOKENS"):
        Settings(api_tokens="superuser:abc")
