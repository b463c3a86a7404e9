"""The published contract (`shared/contract/published/`) is what the code generates, and a valid AsyncAPI 3 document;
its JSON Schemas accept what the code publishes and refuse what it never would."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from services.published import PUBLISHED, stale_documents
from shared.contract.schemas import CallEventKind, CallEventMessage, UnitStatus, UnitStatusEvent
from shared.contract.topics import ALL_TOPICS, CALLS, UNIT_STATUS

DATA = Path(__file__).resolve().parent.parent / "data"


def published(path: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((PUBLISHED / path).read_text())
    return document


def test_the_published_files_are_what_the_code_generates_now() -> None:
    assert stale_documents() == [], "run `kuaijing contract` and commit shared/contract/published/"


def test_the_asyncapi_document_is_valid_asyncapi_3() -> None:
    schema = json.loads((DATA / "asyncapi-3.0.0.schema.json").read_text())
    errors = [
        f"{list(e.path)}: {e.message[:200]}"
        for e in jsonschema.Draft7Validator(schema).iter_errors(published("asyncapi.json"))
    ]
    assert errors == []


def test_every_topic_is_a_channel_with_its_partitions_and_key() -> None:
    channels = {c["address"]: c for c in published("asyncapi.json")["channels"].values()}
    assert set(channels) == {t.name for t in ALL_TOPICS}
    for topic in ALL_TOPICS:
        assert channels[topic.name]["bindings"]["kafka"]["partitions"] == topic.partitions
        assert topic.key in channels[topic.name]["description"]


def test_a_message_schema_accepts_what_the_code_publishes_and_refuses_an_extra_field() -> None:
    status = UnitStatusEvent(unit_id="U1", status=UnitStatus.EN_ROUTE, call_id="C1", ts=datetime.now(UTC))
    value = json.loads(UNIT_STATUS.encode(status))
    validator = jsonschema.Draft202012Validator(published("schemas/UnitStatusEvent.json"))
    validator.validate(value)
    with pytest.raises(jsonschema.ValidationError):
        validator.validate(value | {"vendor": 1})
    event = CallEventMessage(
        call_id="C1", event=CallEventKind.CREATED, ts=datetime.now(UTC), lat=27.2, lon=111.4,
        zone_class="key_area", target_s=60, category="theft", priority=1,
    )  # fmt: skip
    jsonschema.Draft202012Validator(published("schemas/CallEventMessage.json")).validate(
        json.loads(CALLS.encode(event))
    )


def test_the_raw_ping_schema_refuses_an_unknown_kind() -> None:
    validator = jsonschema.Draft202012Validator(published("schemas/RawPing.json"))
    ping = {"kind": "position", "unit_id": "U1", "ts": "2026-11-30T12:00:00+08:00", "lat": 27.2, "lon": 111.4}
    validator.validate(ping)
    with pytest.raises(jsonschema.ValidationError):
        validator.validate(ping | {"kind": "telepathy"})
