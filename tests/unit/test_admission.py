"""Admission control over a handler that holds its slot until the test lets it go."""

from __future__ import annotations

import asyncio

import httpx
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from shared.web.admission import AdmissionControl


def app_with_one_slot(release: asyncio.Event, registry: CollectorRegistry, *, wait_s: float = 0.05) -> FastAPI:
    app = FastAPI()

    @app.get("/slow")
    async def slow() -> dict[str, str]:
        await release.wait()
        return {"done": "yes"}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    app.add_middleware(AdmissionControl, limit=1, wait_s=wait_s, registry=registry, exempt=frozenset({"/healthz"}))
    return app


async def test_past_capacity_a_request_is_answered_503_with_retry_after_and_counted() -> None:
    release, registry = asyncio.Event(), CollectorRegistry()
    transport = httpx.ASGITransport(app=app_with_one_slot(release, registry))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        first = asyncio.create_task(client.get("/slow"))
        await asyncio.sleep(0.01)
        refused = await client.get("/slow")
        probe = await client.get("/healthz")
        release.set()
        admitted = await first
    assert (refused.status_code, refused.headers["retry-after"]) == (503, "1")
    assert refused.json() == {"detail": {"field": None, "error": "the service is at capacity; retry"}}
    assert probe.status_code == 200  # probes are never held back
    assert admitted.status_code == 200
    assert registry.get_sample_value("kuaijing_http_refused_total") == 1
    assert registry.get_sample_value("kuaijing_http_in_flight") == 0


async def test_a_request_waits_for_a_slot_that_frees_within_the_bound() -> None:
    """A bound far longer than the test's two short sleeps: with 50 ms, a loaded CI machine once let the second
    request's wait run out before the release (503)."""
    release, registry = asyncio.Event(), CollectorRegistry()
    app = app_with_one_slot(release, registry, wait_s=10.0)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        first = asyncio.create_task(client.get("/slow"))
        await asyncio.sleep(0.01)
        second = asyncio.create_task(client.get("/slow"))
        await asyncio.sleep(0.01)
        release.set()
        answers = await asyncio.gather(first, second)
    assert [a.status_code for a in answers] == [200, 200]
    assert registry.get_sample_value("kuaijing_http_refused_total") == 0
