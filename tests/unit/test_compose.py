"""`deploy/docker-compose.yml` checked offline: valid against the Compose Specification's JSON Schema, KRaft Kafka
from the official image, and the services, commands, ports and `KUAIJING_*` names the code declares."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from services.analytics.settings import AnalyticsSettings
from services.cli import SERVICES
from services.dispatcher.settings import DispatcherSettings
from services.ingest.settings import IngestSettings
from tests.harness import kuaijing_variables

ROOT = Path(__file__).resolve().parents[2]


def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / "deploy" / "docker-compose.yml").read_text())
    return document


def test_the_compose_file_is_valid_against_the_compose_specification() -> None:
    schema = json.loads((ROOT / "tests" / "data" / "compose-spec.json").read_text())
    errors = [f"{list(e.path)}: {e.message}" for e in jsonschema.Draft201909Validator(schema).iter_errors(compose())]
    assert errors == []


def test_kafka_is_the_official_image_in_kraft_mode_and_postgres_is_there() -> None:
    services = compose()["services"]
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert services["postgres"]["image"].startswith("postgres:")


def test_the_services_are_the_ones_the_cli_serves_on_their_ports_with_known_variables() -> None:
    services = compose()["services"]
    ports = {
        "ingest": IngestSettings().port,
        "dispatcher": DispatcherSettings().port,
        "analytics": AnalyticsSettings().port,
    }
    known = kuaijing_variables(IngestSettings, DispatcherSettings, AnalyticsSettings)
    for name in SERVICES:
        service = services[name]
        assert service["command"] == ["serve", name]
        assert f"{ports[name]}:{ports[name]}" in service["ports"]
        assert set(service["environment"]) <= known
        assert service["environment"]["KUAIJING_BIND_HOST"] == "0.0.0.0"
        assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert f"{IngestSettings().jt808_port}:{IngestSettings().jt808_port}" in services["ingest"]["ports"]
    assert services["migrate"]["command"] == ["migrate"]
