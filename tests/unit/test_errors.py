"""The one error tree: every error of ours has one HTTP status and, where it is refused input, one dead-letter
reason; the translation lives in one table each."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from services.ingest.domain.telemetry import TelemetryRejected
from shared.contract.deadletter import dead_letter
from shared.contract.schemas import RejectReason, Source
from shared.errors import (
    ConfigurationError,
    ConflictError,
    InfrastructureError,
    InvalidError,
    KuaijingError,
    NotFoundError,
    RejectedError,
    TooLargeError,
    UnavailableError,
    UnreadableError,
)
from shared.infra.postgres import UNREACHABLE
from shared.jt808 import Jt808Error
from shared.web.errors import install_error_handlers, status_of


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (UnreadableError("not JSON", field="body"), 400),
        (NotFoundError("no unit 'U1'", field="unit_id"), 404),
        (ConflictError("call C1 is closed"), 409),
        (TooLargeError("too many pings", field="body"), 413),
        (InvalidError("must be before to", field="from"), 422),
        (TelemetryRejected(RejectReason.OUT_OF_RANGE, "lat: too large"), 422),
        (UnavailableError("not acknowledged", field="kafka"), 503),
        (InfrastructureError("PostgreSQL is gone"), 500),
        (ConfigurationError("bad token list"), 500),
    ],
)
def test_every_error_of_ours_has_one_http_status(error: KuaijingError, status: int) -> None:
    assert status_of(error) == status


def test_an_error_reads_field_then_message_and_keeps_both_apart() -> None:
    error = NotFoundError("no unit 'U1'", field="unit_id")
    assert (str(error), error.field, error.error, error.code) == (
        "unit_id: no unit 'U1'",
        "unit_id",
        "no unit 'U1'",
        "not_found",
    )
    assert str(ConflictError("call C1 is closed")) == "call C1 is closed"


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (Jt808Error("bad check code"), "invalid_frame"),
        (TelemetryRejected(RejectReason.UNKNOWN_UNIT, "unit_id: unknown unit 'X'"), "unknown_unit"),
        (RejectedError(RejectReason.INVALID_JSON, "body: not JSON"), "invalid_json"),
    ],
)
def test_refused_input_carries_its_dead_letter_reason(error: RejectedError, reason: str) -> None:
    letter = dead_letter(b"\x7e\x00\x7e", error, source=Source.JT808, now=datetime(2026, 11, 30, tzinfo=UTC))
    assert (letter.reason, letter.error) == (reason, str(error))


@pytest.mark.parametrize(
    "error",
    [
        ConnectionRefusedError(111, "Connection refused"),
        asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
        asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator command"),
    ],
    ids=type,
)
async def test_a_database_that_cannot_be_reached_is_a_503_to_retry_not_a_500(error: Exception) -> None:
    app = FastAPI()
    install_error_handlers(app, unreachable=UNREACHABLE)

    @app.get("/")
    async def route() -> None:
        raise error

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        response = await client.get("/")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert type(error).__name__ in response.json()["detail"]["error"]
