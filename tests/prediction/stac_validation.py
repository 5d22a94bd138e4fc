"""STAC files checked with stac-validator (the ``stac-valid`` package) offline: its schema map
points the STAC 1.1.0 core and GeoJSON schemas at the copies pystac ships. The extensions'
schemas live only on their web sites, out of this machine's reach (``--core``)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pystac.validation

_SPEC = "https://schemas.stacspec.org/v1.1.0/"
_FOLDERS = {"item.json": "item-spec", "catalog.json": "catalog-spec"}


def _schema_map() -> dict[str, str]:
    local = Path(pystac.validation.__file__).parent / "jsonschemas"
    mapping = {
        f"{_SPEC}{_FOLDERS.get(f.name, 'item-spec')}/json-schema/{f.name}": str(f)
        for f in (local / "stac-spec" / "v1.1.0").glob("*.json")
    }
    for name in ("Feature.json", "Geometry.json"):
        mapping[f"https://geojson.org/schema/{name}"] = str(local / "geojson" / name)
    return mapping


def stac_validator_errors(path: Path) -> list[str]:
    """What stac-validator finds wrong with the STAC file at ``path`` (nothing: valid)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # its module's old name
        from stac_validator.validate import StacValidate

    check = StacValidate(str(path), core=True, schema_map=_schema_map())
    if check.run():
        return []
    return [str(m.get("error_message", m)) for m in check.message]
