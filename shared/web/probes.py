"""The three unauthenticated endpoints every service serves (contract section 7)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

ReadinessCheck = Callable[[], Awaitable[None]]
"""Raises when its dependency is unreachable; the message is shown in `/readyz`."""


class Readiness:
    """Checks registered by the lifespan once the resources exist; not ready until then."""

    def __init__(self) -> None:
        self.checks: dict[str, ReadinessCheck] = {}

    def register(self, name: str, check: ReadinessCheck) -> None:
        self.checks[name] = check


def probes_router(registry: CollectorRegistry, readiness: Readiness) -> APIRouter:
    router = APIRouter(tags=["probes"])

    @router.get("/healthz", summary="Process is alive")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz", summary="Kafka and PostgreSQL are reachable")
    async def readyz() -> JSONResponse:
        results: dict[str, str] = {} if readiness.checks else {"service": "starting"}
        for name, check in readiness.checks.items():
            try:
                await check()
                results[name] = "ok"
            except Exception as e:
                results[name] = f"{type(e).__name__}: {e}"
        ready = all(v == "ok" for v in results.values())
        return JSONResponse({"ready": ready, "checks": results}, status_code=200 if ready else 503)

    @router.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse)
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return router
