"""The anchor of the calls path: a bare FastAPI endpoint that validates the same body and inserts one row per request
with asyncpg (one statement, committed on its own), served by uvicorn as the dispatcher is, through the services' own
pool (`shared.infra.postgres.open_pool`: no session reset on release), so neither side pays a round trip the other
does not.

`python -m bench.calls_anchor PORT` with `KUAIJING_DATABASE_URL` set; `bench dispatcher` runs it as its own process
beside the dispatcher's, so both pay the same HTTP server, validation, pool and commit per request.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated

import uvicorn
from fastapi import FastAPI, Request, status
from pydantic import BaseModel, Field

from shared.infra.postgres import open_pool

_TABLE = """CREATE TABLE IF NOT EXISTS anchor_calls (
    call_id text PRIMARY KEY, received_at timestamptz NOT NULL, lat double precision NOT NULL,
    lon double precision NOT NULL, category text NOT NULL, priority smallint NOT NULL)"""


class AnchorCall(BaseModel):
    call_id: Annotated[str, Field(min_length=1, max_length=64)]
    lat: Annotated[float, Field(ge=-90, le=90)]
    lon: Annotated[float, Field(ge=-180, le=180)]
    category: Annotated[str, Field(min_length=1, max_length=64)]
    priority: Annotated[int, Field(ge=1, le=5)]


class AnchorCreated(BaseModel):
    call_id: str
    received_at: datetime


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with open_pool(os.environ["KUAIJING_DATABASE_URL"]) as pool:
        await pool.execute(_TABLE)
        app.state.pool = pool
        yield


app = FastAPI(lifespan=lifespan)


@app.get("/readyz")
async def ready() -> dict[str, str]:
    return {"status": "ready"}


@app.post("/v1/calls", status_code=status.HTTP_201_CREATED, response_model=AnchorCreated)
async def create_call(body: AnchorCall, request: Request) -> AnchorCreated:
    received_at = datetime.now(UTC)
    await request.app.state.pool.execute(
        "INSERT INTO anchor_calls (call_id, received_at, lat, lon, category, priority) VALUES ($1, $2, $3, $4, $5, $6)",
        body.call_id,
        received_at,
        body.lat,
        body.lon,
        body.category,
        body.priority,
    )
    return AnchorCreated(call_id=body.call_id, received_at=received_at)


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
