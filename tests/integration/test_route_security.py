"""Who may call what, decided for every route each app actually serves: a route added without a decision in
`POLICY` fails the first test; the second calls every route without a token, with an unknown one and with each
role's token, against the running services, and checks 401 / 403 / admitted; no token ever reaches the logs."""

from __future__ import annotations

import logging
import re
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from services.analytics.app import create_app as analytics_app
from services.analytics.settings import AnalyticsSettings
from services.dispatcher.app import create_app as dispatcher_app
from services.dispatcher.settings import DispatcherSettings
from services.ingest.app import create_app as ingest_app
from services.ingest.settings import IngestSettings
from tests.conftest import TOKENS, RunningService

pytestmark = pytest.mark.integration

PUBLIC = frozenset({("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics")})
"""Contract section 7: the probes and metrics need no token."""

READERS = frozenset({"viewer", "dispatcher", "admin"})
DISPATCHERS = frozenset({"dispatcher", "admin"})
ADMINS = frozenset({"admin"})

POLICY: dict[str, dict[tuple[str, str], frozenset[str]]] = {
    "ingest": {("POST", "/v1/telemetry"): frozenset({"terminal", "admin"})},
    "dispatcher": {
        ("PUT", "/v1/platforms/{platform_id}"): ADMINS,
        ("PUT", "/v1/units/{unit_id}"): ADMINS,
        ("PUT", "/v1/zones/{zone_id}"): ADMINS,
        ("POST", "/v1/registry/import"): ADMINS,
        ("GET", "/v1/platforms"): READERS,
        ("GET", "/v1/platforms/{platform_id}"): READERS,
        ("GET", "/v1/units"): READERS,
        ("GET", "/v1/units/{unit_id}"): READERS,
        ("GET", "/v1/zones"): READERS,
        ("GET", "/v1/zones/{zone_id}"): READERS,
        ("GET", "/v1/nearest"): READERS,
        ("GET", "/v1/calls"): READERS,
        ("GET", "/v1/calls/{call_id}"): READERS,
        ("GET", "/v1/events"): READERS,
        ("GET", "/v1/session"): READERS,
        ("GET", "/v1/map"): READERS,
        ("GET", "/v1/coverage"): READERS,
        ("GET", "/v1/coverage/history"): READERS,
        ("GET", "/v1/advice"): READERS,
        ("POST", "/v1/calls"): DISPATCHERS,
        ("POST", "/v1/calls/{call_id}/assign"): DISPATCHERS,
        ("POST", "/v1/calls/{call_id}/close"): DISPATCHERS,
        ("POST", "/v1/units/{unit_id}/status"): DISPATCHERS,
    },
    "analytics": {
        ("GET", "/"): READERS,
        ("GET", "/v1/reports/response-times"): READERS,
        ("GET", "/v1/reports/daily"): READERS,
        ("GET", "/v1/reports/weekly"): READERS,
    },
}

APPS = {
    "ingest": lambda: ingest_app(IngestSettings()),
    "dispatcher": lambda: dispatcher_app(DispatcherSettings()),
    "analytics": lambda: analytics_app(AnalyticsSettings()),
}


def routes_of(app: FastAPI) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, ops in app.openapi()["paths"].items() for method in ops}


@pytest.mark.parametrize("service", list(POLICY))
def test_every_route_an_app_serves_has_a_role_decision(service: str) -> None:
    served = routes_of(APPS[service]())
    assert served - PUBLIC - set(POLICY[service]) == set(), "decide who may call the new route in POLICY"
    assert set(POLICY[service]) - served == set(), "POLICY names a route the app no longer serves"
    assert served >= PUBLIC


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "no-such-id", path)


async def _call(client: httpx.AsyncClient, method: str, path: str, token: str | None) -> int:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    body: Any = {} if method in ("POST", "PUT") else None
    params = {"lat": "27.2", "lon": "111.4"} if path == "/v1/nearest" else None
    async with client.stream(method, _concrete(path), headers=headers, json=body, params=params) as response:
        return response.status_code  # a stream (the live feed) is left as soon as its status is known


@pytest.mark.parametrize("service", list(POLICY))
async def test_each_route_refuses_a_missing_or_unknown_token_and_the_wrong_roles(
    service: str,
    ingest: RunningService,
    dispatcher: RunningService,
    analytics: RunningService,
    caplog: pytest.LogCaptureFixture,
) -> None:
    running = {"ingest": ingest, "dispatcher": dispatcher, "analytics": analytics}[service]
    caplog.set_level(logging.DEBUG)
    wrong: list[tuple[str, str, str | None, int]] = []
    async with httpx.AsyncClient(base_url=running.url, timeout=30) as client:
        for (method, path), admitted in POLICY[service].items():
            for role in (None, "unknown", *TOKENS):
                token = None if role is None else TOKENS.get(role, "not-a-token-of-ours")
                status = await _call(client, method, path, token)
                expected_refusal = 401 if role in (None, "unknown") else None if role in admitted else 403
                if (expected_refusal is None and status in (401, 403)) or (
                    expected_refusal is not None and status != expected_refusal
                ):
                    wrong.append((method, path, role, status))
        for method, path in PUBLIC:
            if (status := await _call(client, method, path, None)) in (401, 403):
                wrong.append((method, path, None, status))
    assert wrong == []
    leaked = [token for token in (*TOKENS.values(), "not-a-token-of-ours") if token in caplog.text]
    assert leaked == []
