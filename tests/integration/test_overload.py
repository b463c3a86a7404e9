"""A dispatcher offered far more calls than it can serve at once answers the excess at once with 503 and
`Retry-After` (counted in `/metrics`), instead of queueing them for a minute; every call is answered, none is lost
or doubled: each 201 is one call in PostgreSQL and each 503 is none."""

from __future__ import annotations

import asyncio
import time
import uuid

import asyncpg
import httpx
import pytest

from services.dispatcher.app import create_app
from services.dispatcher.settings import DispatcherSettings
from tests.conftest import TOKENS, RunningService
from tests.integration.test_analytics import metric

pytestmark = pytest.mark.integration

OFFERED = 300


async def test_past_capacity_calls_are_refused_fast_with_retry_after_and_counted(
    dispatcher_settings: DispatcherSettings, db: asyncpg.Connection
) -> None:
    tight = dispatcher_settings.model_copy(update={"max_in_flight": 2, "admission_wait_s": 0.2})
    tag = uuid.uuid4().hex[:8]
    async with (
        RunningService(create_app(tight)) as service,
        httpx.AsyncClient(
            base_url=service.url,
            headers={"Authorization": f"Bearer {TOKENS['dispatcher']}"},
            timeout=60,
            limits=httpx.Limits(max_connections=OFFERED),
        ) as client,
    ):
        began = time.monotonic()
        answers = await asyncio.gather(
            *(
                client.post(
                    "/v1/calls",
                    json={"call_id": f"O-{tag}-{i}", "lat": 31.5, "lon": 120.3, "category": "x", "priority": 3},
                )
                for i in range(OFFERED)
            )
        )
        took = time.monotonic() - began
        refused = [a for a in answers if a.status_code == 503]
        created = [a for a in answers if a.status_code == 201]
        # A fresh connection: one of the 300 left idle past uvicorn's keep-alive may be closed as it is reused.
        async with httpx.AsyncClient(base_url=service.url) as fresh:
            counted = metric((await fresh.get("/metrics")).text, "kuaijing_http_refused_total")
    assert len(created) + len(refused) == OFFERED, {a.status_code for a in answers}
    assert refused, f"{OFFERED} concurrent calls with 2 slots: none refused in {took:.1f} s"
    assert all(a.headers["retry-after"] == "1" for a in refused)
    assert counted == len(refused)
    stored = await db.fetchval("SELECT count(*) FROM calls WHERE call_id LIKE $1", f"O-{tag}-%")
    assert stored == len(created)
