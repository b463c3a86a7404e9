"""The project's errors as HTTP answers: one table, installed by every service, so a status means the same
everywhere and a body is always `{"detail": {"field": ..., "error": ...}}`."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, TypeAdapter
from starlette.exceptions import HTTPException as StarletteHTTPException

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


async def _invalid_request(_request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's own validation failures in the project's one error shape, naming the first field at fault."""
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    field = ".".join(str(part) for part in first["loc"]) or None
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return JSONResponse({"detail": {"field": field, "error": f"{first['msg']}{more}"}}, status_code=422)


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's and FastAPI's own HTTP errors (a body that cannot be parsed, a token refused) in the one shape."""
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, dict) else {"field": None, "error": str(exc.detail)}
    return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=exc.headers)


async def _unreachable(request: Request, exc: Exception) -> JSONResponse:
    """A dependency the service cannot reach (PostgreSQL restarting, failing over): a 503 to retry, not a 500."""
    return await _answer(request, UnavailableError(f"the database is unreachable: {type(exc).__name__}: {exc}"))


def install_error_handlers(app: FastAPI, *, unreachable: tuple[type[Exception], ...] = ()) -> None:
    app.add_exception_handler(KuaijingError, _answer)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    for error in unreachable:
        app.add_exception_handler(error, _unreachable)
    app.openapi = _documented(app)  # type: ignore[method-assign]


class ErrorDetail(BaseModel):
    field: str | None
    error: str


class ErrorBody(BaseModel):
    """Every error answer of every service: `{"detail": {"field": ..., "error": ...}}`."""

    detail: ErrorDetail


_ERROR_DESCRIPTIONS = {
    "400": "the body cannot be read",
    "401": "no token, or a token that is not known",
    "403": "the token's role may not do this",
    "404": "no such item, named in the path or referred to by the body",
    "409": "the request contradicts the current state",
    "422": "the request is not valid; `field` names what is wrong",
    "503": "at capacity, or Kafka did not acknowledge: retry after `Retry-After` seconds",
}


def _documented(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """The app's OpenAPI with the answers every route can give written down: 401 and 403 where a token is needed,
    404 where the path or the body names an item, 400 and 409 where a request changes state, 422 and 503
    everywhere, all in the one error shape (FastAPI would document its own 422 shape, which the handler above
    replaces)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        body = TypeAdapter(ErrorBody).json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(body.pop("$defs", {}))
        schemas["ErrorBody"] = body
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
        error = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
        for path, operations in schema.get("paths", {}).items():
            for method, operation in operations.items():
                codes = ["422", "503"]
                if operation.get("security"):
                    codes += ["401", "403"]
                if method in ("post", "put"):
                    codes += ["400", "404", "409"]
                elif "{" in path:
                    codes.append("404")
                responses = operation.setdefault("responses", {})
                for code in codes:
                    responses[code] = {"description": _ERROR_DESCRIPTIONS[code], "content": error}
                if "413" in responses:
                    responses["413"]["content"] = error
        app.openapi_schema = schema
        return schema

    return openapi
