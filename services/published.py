"""The contract as published files: AsyncAPI for the topics, a JSON Schema per message, OpenAPI per service.

Generated from the code (`shared/contract`, each service's routes) by `kuaijing contract`, committed under
`shared/contract/published/`, and checked to be current by a test, so other systems can build against the files
alone and the files can never describe something the code does not do.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from services.analytics.app import create_app as analytics_app
from services.analytics.settings import AnalyticsSettings
from services.dispatcher.app import create_app as dispatcher_app
from services.dispatcher.settings import DispatcherSettings
from services.ingest.app import create_app as ingest_app
from services.ingest.settings import IngestSettings
from shared.contract.asyncapi import asyncapi_document, message_schemas

PUBLISHED = Path(__file__).resolve().parent.parent / "shared" / "contract" / "published"


def published_documents() -> dict[str, bytes]:
    """Every published file, by its path under `PUBLISHED`."""
    documents: dict[str, Any] = {"asyncapi.json": asyncapi_document()}
    for name, schema in message_schemas().items():
        documents[f"schemas/{name}.json"] = schema
    documents["openapi/ingest.json"] = ingest_app(IngestSettings()).openapi()
    documents["openapi/dispatcher.json"] = dispatcher_app(DispatcherSettings()).openapi()
    documents["openapi/analytics.json"] = analytics_app(AnalyticsSettings()).openapi()
    return {path: (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode() for path, doc in documents.items()}


def stale_documents(root: Path = PUBLISHED) -> list[str]:
    """Published files that differ from what the code generates now, or are missing, or are left over."""
    wanted = published_documents()
    present = {str(p.relative_to(root)) for p in root.rglob("*.json")} if root.exists() else set()
    changed = [
        path for path, data in wanted.items() if not (root / path).exists() or (root / path).read_bytes() != data
    ]
    return sorted(changed + sorted(present - set(wanted)))


def write_documents(root: Path = PUBLISHED) -> list[str]:
    """Write every published file (and remove ones no longer generated); returns what changed."""
    changed = stale_documents(root)
    wanted = published_documents()
    for path in changed:
        target = root / path
        if path in wanted:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(wanted[path])
        else:
            target.unlink()
    return changed
