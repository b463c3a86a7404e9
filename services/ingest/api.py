"""HTTP telemetry in (contract section 2, way 2): one object, a JSON array, or NDJSON."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from services.ingest.adapters.registry_cache import UnitDirectoryCache
from services.ingest.intake import Candidate, TelemetryIntake
from services.ingest.settings import IngestSettings
from shared.contract.codec import decode
from shared.contract.roles import Role
from shared.contract.schemas import RejectReason, Source
from shared.errors import RejectedError, TooLargeError, UnreadableError
from shared.web.auth import require_role
from shared.web.service import service_state, settings_of

router = APIRouter(tags=["telemetry"])


@dataclass(frozen=True, slots=True)
class Ingest:
    """What ingest's routes use: the one intake path and the unit directory it validates against."""

    intake: TelemetryIntake
    directory: UnitDirectoryCache


NDJSON = "application/x-ndjson"


class RejectedItem(BaseModel):
    index: int
    error: str


class TelemetryAccepted(BaseModel):
    accepted: int
    rejected: list[RejectedItem]


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise TooLargeError(f"larger than {limit} bytes", field="body")
    chunks = bytearray()
    async for chunk in request.stream():
        chunks += chunk
        if len(chunks) > limit:
            raise TooLargeError(f"larger than {limit} bytes", field="body")
    return bytes(chunks)


def _ndjson_candidates(body: bytes) -> list[Candidate] | None:
    """One candidate per non-blank line; None when no line at all is JSON (the body is not JSON)."""
    candidates = []
    parsed_any = False
    for line in body.splitlines():
        if not line.strip():
            continue
        try:
            value: Any = decode(line)
            parsed_any = True
        except ValueError as e:
            value = RejectedError(RejectReason.INVALID_JSON, f"line: not JSON ({e})")
        candidates.append(Candidate(value=value, payload=line, key=_key_of(value)))
    return candidates if parsed_any else None


def _key_of(value: Any) -> bytes:
    unit_id = value.get("unit_id") if isinstance(value, dict) else None
    return unit_id.encode() if isinstance(unit_id, str) else b""


@router.post(
    "/v1/telemetry",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=TelemetryAccepted,
    summary="Submit position and video pings",
    description=(
        "Body: one ping object, a JSON array of pings, or NDJSON (`Content-Type: application/x-ndjson`). "
        "Answers 202 once every accepted ping is acknowledged by Kafka; each rejected item is listed by index and "
        "also published to `kuaijing.deadletter`. 400 when the body is not JSON at all (the body is dead-lettered "
        "too), 413 over 10,000 pings or 8 MiB, 503 when Kafka did not acknowledge (nothing in the body may be "
        "assumed accepted; resend it: repeated pings are stored once). Not JSON includes nesting deeper than "
        "1,024, invalid UTF-8, NaN, Infinity and numbers beyond a double; a key given twice in one object takes "
        "its last value."
    ),
    responses={
        400: {"description": "not JSON"},
        413: {"description": "too large"},
        503: {"description": "Kafka"},
    },
)
async def post_telemetry(
    request: Request, _role: Annotated[Role, Depends(require_role(Role.TERMINAL))]
) -> JSONResponse:
    settings = settings_of(request, IngestSettings)
    intake = service_state(request, Ingest).intake
    body = await _read_body(request, settings.max_body_bytes)

    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    candidates: list[Candidate] | None
    if content_type == NDJSON:
        candidates = _ndjson_candidates(body)
    else:
        try:
            value = decode(body)
        except ValueError:
            candidates = None
        else:
            if isinstance(value, list):
                candidates = [Candidate(value=item, key=_key_of(item)) for item in value]
            else:
                candidates = [Candidate(value=value, payload=body, key=_key_of(value))]
    if candidates is None:
        await intake.submit(
            [Candidate(value=RejectedError(RejectReason.INVALID_JSON, "body: not JSON"), payload=body)],
            source=Source.HTTP,
        )
        raise UnreadableError("not JSON (send a ping object, a JSON array of pings, or NDJSON)", field="body")
    if len(candidates) > settings.max_batch_items:
        raise TooLargeError(f"{len(candidates)} pings; at most {settings.max_batch_items} per request", field="body")

    rejections = await intake.submit(candidates, source=Source.HTTP)
    answer = TelemetryAccepted(
        accepted=len(candidates) - len(rejections),
        rejected=[RejectedItem(index=r.index, error=r.error) for r in rejections],
    )
    return JSONResponse(answer.model_dump(), status_code=status.HTTP_202_ACCEPTED)
