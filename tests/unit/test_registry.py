import pytest
from pydantic import ValidationError

from shared.contract.registry import RegistryImport, Unit, ZoneClass, normalise_terminal_id
from shared.infra.postgres import bundled_migrations


def test_terminal_ids_from_2013_and_2019_headers_name_the_same_terminal() -> None:
    assert normalise_terminal_id("013800138000") == normalise_terminal_id("00000000013800138000") == "13800138000"


@pytest.mark.parametrize("raw", ["", "0000", "138-0013"])
def test_malformed_terminal_ids_are_refused(raw: str) -> None:
    with pytest.raises(ValueError, match="terminal_id"):
        normalise_terminal_id(raw)


def test_a_unit_stores_its_terminal_id_normalised() -> None:
    unit = Unit(id="U1", platform_id="P1", kind="patrol_car", callsign="2095", terminal_id="013800138000")
    assert unit.terminal_id == "13800138000"


def test_an_import_document_reads_zones_with_their_class() -> None:
    doc = RegistryImport.model_validate(
        {"zones": [{"id": "Z", "class": "key_area", "geometry": {"type": "Polygon", "coordinates": [
            [[111.4, 27.2], [111.5, 27.2], [111.5, 27.3], [111.4, 27.2]]]}}]}
    )  # fmt: skip
    assert doc.zones[0].class_ is ZoneClass.KEY_AREA


def test_an_import_document_refuses_unknown_fields_and_kinds() -> None:
    with pytest.raises(ValidationError):
        RegistryImport.model_validate({"units": [{"id": "U", "platform_id": "P", "kind": "tank", "callsign": "1"}]})
    with pytest.raises(ValidationError):
        RegistryImport.model_validate({"vehicles": []})


def test_migrations_are_numbered_without_gaps() -> None:
    versions = [m.version for m in bundled_migrations()]
    assert versions == list(range(1, len(versions) + 1))


def test_text_postgresql_cannot_store_is_refused_at_the_edge() -> None:
    """Found by the API fuzz run: a NUL in a platform name reached PostgreSQL and came back as a 500."""
    from services.dispatcher.api import CallBody
    from shared.contract.registry import Platform, PlatformKind

    with pytest.raises(ValidationError, match="NUL"):
        Platform(id="P-1", name="a\x00b", kind=PlatformKind.PATROL, lat=27.0, lon=111.0)
    with pytest.raises(ValidationError, match="NUL"):
        CallBody(lat=27.0, lon=111.0, category="theft", priority=1, note="\x00")
