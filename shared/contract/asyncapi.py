"""The Kafka half of the contract as documents other systems can read: an AsyncAPI 3 description of every topic and
a standalone JSON Schema (draft 2020-12) for every message, both generated from `topics.py` and `schemas.py` so
they cannot drift from what the code publishes. `kuaijing contract` writes them; a test checks they are current."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import models_json_schema

from shared.contract.schemas import Ping
from shared.contract.topics import ALL_TOPICS, JT808_CONTENT_TYPE, TELEMETRY_RAW, Topic

_REF = "#/components/schemas/{model}"

RAW_PING = "RawPing"
JT808_FRAME = "Jt808Frame"


def _channel_id(topic: Topic[Any]) -> str:
    return topic.name.removeprefix("kuaijing.").replace("-", "_").replace(".", "_")


def message_schemas() -> dict[str, dict[str, Any]]:
    """Every message a topic carries, by name, as a standalone JSON Schema (its definitions inlined)."""
    schemas: dict[str, dict[str, Any]] = {}
    for topic in ALL_TOPICS:
        if topic.value is not None:
            schemas[topic.value.__name__] = _standalone(TypeAdapter(topic.value).json_schema(mode="serialization"))
    schemas[RAW_PING] = _standalone(TypeAdapter(Ping).json_schema(mode="validation"))
    schemas[RAW_PING]["title"] = RAW_PING
    return schemas


def _standalone(schema: dict[str, Any]) -> dict[str, Any]:
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def asyncapi_document() -> dict[str, Any]:
    models: list[type[BaseModel]] = [t.value for t in ALL_TOPICS if t.value is not None]
    _, definitions = models_json_schema([(m, "serialization") for m in models], ref_template=_REF)
    components: dict[str, Any] = dict(definitions.get("$defs", {}))
    raw = TypeAdapter(Ping).json_schema(mode="validation", ref_template=_REF)
    components.update(raw.pop("$defs", {}))
    # AsyncAPI's Schema Object names the discriminating property; OpenAPI's (which pydantic writes) maps values too.
    components[RAW_PING] = {**raw, "title": RAW_PING, "discriminator": raw["discriminator"]["propertyName"]}

    messages: dict[str, Any] = {}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for topic in ALL_TOPICS:
        channel = _channel_id(topic)
        names = [topic.value.__name__] if topic.value is not None else [RAW_PING, JT808_FRAME]
        for name in names:
            messages[name] = _message(topic, name)
        bindings: dict[str, Any] = {"partitions": topic.partitions, "bindingVersion": "0.5.0"}
        if topic.retention_ms is not None:
            bindings["topicConfiguration"] = {"retention.ms": topic.retention_ms}
        channels[channel] = {
            "address": topic.name,
            "description": f"Key: {topic.key}.",
            "messages": {name: {"$ref": f"#/components/messages/{name}"} for name in names},
            "bindings": {"kafka": bindings},
        }
        operations[f"consume_{channel}"] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{channel}"},
            "messages": [{"$ref": f"#/channels/{channel}/messages/{name}"} for name in names],
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Kuaijing (快警) Kafka topics",
            "version": "0.1.0",
            "description": "Every topic Kuaijing reads or publishes, generated from shared/contract (topics.py, "
            "schemas.py). Values are JSON (UTF-8) unless the record header says otherwise; published values carry "
            "exactly the fields of their schema. Delivery is at least once: consumers deduplicate by natural key.",
        },
        "defaultContentType": "application/json",
        "servers": {
            "embedded": {
                "host": "127.0.0.1:9092",
                "protocol": "kafka",
                "description": "the broker `kuaijing up` starts; set KUAIJING_KAFKA_BOOTSTRAP for any other",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": components},
    }


def _message(topic: Topic[Any], name: str) -> dict[str, Any]:
    key = {"type": "string", "description": topic.key}
    if name == JT808_FRAME:
        return {
            "name": name,
            "title": "A JT/T 808 frame relayed by another gateway",
            "contentType": JT808_CONTENT_TYPE.decode(),
            "headers": {
                "type": "object",
                "properties": {"content-type": {"const": JT808_CONTENT_TYPE.decode()}},
                "required": ["content-type"],
            },
            "payload": {"type": "string", "contentEncoding": "binary", "description": "one frame, 0x7e-delimited"},
            "bindings": {"kafka": {"key": key, "bindingVersion": "0.5.0"}},
        }
    title = "A position or video ping (contract section 2)" if topic is TELEMETRY_RAW else name
    return {
        "name": name,
        "title": title,
        "contentType": "application/json",
        "payload": {"$ref": _REF.format(model=name)},
        "bindings": {"kafka": {"key": key, "bindingVersion": "0.5.0"}},
    }
