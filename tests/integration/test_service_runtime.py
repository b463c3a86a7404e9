"""What the service builder sets up for the process besides its resources."""

from __future__ import annotations

import gc

from services.ingest.settings import IngestSettings
from tests.conftest import RunningService


async def test_a_started_service_has_its_young_threshold_and_its_start_up_frozen(
    ingest: RunningService, ingest_settings: IngestSettings
) -> None:
    assert ingest_settings.gc_young_threshold == 50_000
    assert gc.get_threshold()[0] == ingest_settings.gc_young_threshold
    assert gc.get_freeze_count() > 0, "start-up's objects should be out of the collector's generations"
