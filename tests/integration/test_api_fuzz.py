"""Schemathesis against each service's published OpenAPI, with valid tokens, over real processes on the suite's
Kafka and PostgreSQL: every operation, generated and mutated inputs; no answer is a 500, every status is one the
document lists, and every body matches its documented schema (errors included)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.schemas import BaseSchema
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import TOKENS, Infra
from tests.replicas import Replica, running, start_replica

pytestmark = pytest.mark.integration

PUBLISHED = Path(__file__).resolve().parents[2] / "shared" / "contract" / "published" / "openapi"
SERVICES = ("ingest", "dispatcher", "analytics")
CHECKS = [status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def services(infra: Infra) -> Iterator[dict[str, Replica]]:
    with running([start_replica(infra, name) for name in SERVICES]) as replicas:
        yield dict(zip(SERVICES, replicas, strict=True))


def _schema(name: str) -> BaseSchema:
    # The live feed is a stream that never ends; it is exercised by the dispatcher's own tests.
    return schemathesis.openapi.from_path(PUBLISHED / f"{name}.json").exclude(path="/v1/events")


INGEST, DISPATCHER, ANALYTICS = (_schema(name) for name in SERVICES)

fuzz_settings = settings(
    max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None
)


def _call(case: Any, replica: Replica) -> None:
    """`call_and_validate` raises on any check that fails (undocumented status or content type, a body that does not
    match its schema); the assertion says the one property no input may break."""
    case.headers = {**(case.headers or {}), "Authorization": f"Bearer {TOKENS['admin']}"}
    response = case.call_and_validate(base_url=replica.url, checks=CHECKS, timeout=30)
    assert response.status_code < 500, (case.method, case.path, response.status_code, response.text[:500])


@INGEST.parametrize()
@fuzz_settings
def test_ingest_answers_every_generated_request_as_documented(case: Any, services: dict[str, Replica]) -> None:
    _call(case, services["ingest"])


@DISPATCHER.parametrize()
@fuzz_settings
def test_the_dispatcher_answers_every_generated_request_as_documented(case: Any, services: dict[str, Replica]) -> None:
    _call(case, services["dispatcher"])


@ANALYTICS.parametrize()
@fuzz_settings
def test_analytics_answers_every_generated_request_as_documented(case: Any, services: dict[str, Replica]) -> None:
    _call(case, services["analytics"])
