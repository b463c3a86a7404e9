"""The project's errors as HTTP answers: one table, installed by every service, so a status means the same
everywhere and a body is always `{"detail": {"field": ..., "error": ...}}`."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from shared.errors import (
    ConflictError,
    InvalidError,
    KuaijingError,
    NotFoundError,
    RejectedError,
    TooLargeError,
    UnavailableError,
    UnreadableError,
)

log = logging.getLogger(__name__)

HTTP_STATUS: dict[type[KuaijingError], int] = {
    UnreadableError: 400,
    NotFoundError: 404,
    ConflictError: 409,
    TooLargeError: 413,
    InvalidError: 422,
    RejectedError: 422,
    UnavailableError: 503,
}
"""Anything else of ours is a 500: a bug or an infrastructure failure the service cannot explain to the client."""

RETRY_AFTER_S = 1


def status_of(error: KuaijingError) -> int:
    """The status of the nearest class in the table, walking up the tree."""
    for cls in type(error).__mro__:
        if cls in HTTP_STATUS:
            return HTTP_STATUS[cls]
    return 500


async def _answer(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, KuaijingError)
    status = status_of(exc)
    headers: dict[str, str] = {}
    if status == 503:
        headers["Retry-After"] = str(RETRY_AFTER_S)
        log.warning("answered 503: %s", exc)
    elif status == 500:
        log.error("answered 500: %r", exc)
    return JSONResponse({"detail": {"field": exc.field, "error": exc.error}}, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(KuaijingError, _answer)
