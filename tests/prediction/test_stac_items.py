"""The STAC Items and Catalog of a predict run, read off the maps' own files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
from affine import Affine
from rasterio.warp import transform_bounds

from tessera.tasks.base.outputs import OutputRefusedError
from tessera.tasks.prediction.stac_items import CATALOG_FILE, item_path, write_stac
from tests.helpers import UTM16, write_geotiff
from tests.prediction.stac_validation import stac_validator_errors

LINEAGE = {
    "tessera_model": "tessera-l8",
    "tessera_model_version": "3",
    "tessera_model_ref": "models:/tessera-l8@champion",
    "tessera_git_sha": "abc1234",
    "tessera_input_sha256": "f" * 64,
    "tessera_input": "data/l8.tif",
}


def class_map(
    path: Path,
    crs: str | None = UTM16,
    names: tuple[str, ...] = ("clear", "cloud"),
    lineage: dict[str, str] = LINEAGE,
) -> Path:
    """A class map as predict writes one: classes 0..K-1, 255 nodata, lineage and class tags,
    a colour table."""
    data = np.zeros((40, 60), np.uint8)
    data[:, 30:] = 1
    data[:5] = 255
    write_geotiff(path, data, crs=crs, nodata=255,
                  transform=Affine(30.0, 0.0, 452475.0, 0.0, -30.0, 3408645.0))  # fmt: skip
    with rasterio.open(path, "r+") as ds:
        ds.update_tags(**lineage, **{f"class_{i}": n for i, n in enumerate(names)})
        ds.write_colormap(1, {0: (10, 20, 30, 255), 1: (200, 100, 0, 255), 255: (0, 0, 0, 0)})
    return path


def test_an_item_per_scene_in_a_catalog_with_the_maps_grid_classes_and_lineage(tmp_path):
    maps = class_map(tmp_path / "l8_classes.tif", names=("clear", "cloud shadow"))
    class_map(tmp_path / "l8_probabilities.tif")  # the same model and input: an asset
    class_map(tmp_path / "l8_anomaly.tif", lineage=LINEAGE | {"tessera_model_version": "2"})
    cat = write_stac(tmp_path, [str(maps)])
    assert cat == tmp_path / CATALOG_FILE
    (item,) = pystac.Catalog.from_file(str(cat)).get_items()
    assert item.id == "l8" and item_path(maps) == tmp_path / "l8_item.json"
    props = item.properties
    assert props["proj:code"] == "EPSG:32616" and props["proj:shape"] == [40, 60]
    assert props["proj:transform"] == [30.0, 0.0, 452475.0, 0.0, -30.0, 3408645.0]
    with rasterio.open(maps) as ds:
        west, south, east, north = transform_bounds(ds.crs, "EPSG:4326", *ds.bounds)
    assert item.bbox == pytest.approx([west, south, east, north], abs=1e-6)
    assert -87.6 < west < east < -87.4 and 30.7 < south < north < 30.9  # UTM 16N, Florida
    for key, tag in (("model", "tessera_model"), ("git_sha", "tessera_git_sha"),
                     ("input_sha256", "tessera_input_sha256")):  # fmt: skip
        assert props[f"tessera:{key}"] == LINEAGE[tag]
    assert "models:/tessera-l8@champion" in props["processing:lineage"]
    assert set(props["processing:software"]) == {"tessera"}
    classes = item.assets["classes"].extra_fields["classification:classes"]
    assert classes == [  # names as the classification extension allows; titles as given
        {"value": 0, "name": "clear", "title": "clear", "color_hint": "0A141E"},
        {"value": 1, "name": "cloud_shadow", "title": "cloud shadow", "color_hint": "C86400"},
        {"value": 255, "name": "nodata", "nodata": True},
    ]
    assert Path(item.assets["probabilities"].get_absolute_href() or "") == (
        tmp_path / "l8_probabilities.tif"
    )
    assert "anomaly" not in item.assets  # another model version's map, left by an earlier run
    assert props["processing:datetime"] == props["datetime"]
    assert any("classification" in e for e in item.stac_extensions)
    assert item.to_dict()["stac_version"] == "1.1.0"
    assert stac_validator_errors(item_path(maps)) == [] and stac_validator_errors(cat) == []


def test_a_later_run_adds_its_items_and_keeps_the_others(tmp_path):
    first = class_map(tmp_path / "a_classes.tif")
    write_stac(tmp_path, [str(first)])
    stamp = item_path(first).stat().st_mtime_ns
    second = class_map(tmp_path / "b_classes.tif")
    cat = write_stac(tmp_path, [str(second)])
    assert cat is not None
    ids = sorted(i.id for i in pystac.Catalog.from_file(str(cat)).get_items())
    assert ids == ["a", "b"] and item_path(first).stat().st_mtime_ns == stamp


def test_a_map_without_a_crs_has_no_footprint(tmp_path):
    maps = class_map(tmp_path / "plain_classes.tif", crs=None)
    write_stac(tmp_path, [str(maps)])
    item = json.loads(item_path(maps).read_text())
    assert item["geometry"] is None and "bbox" not in item
    assert item["properties"]["proj:code"] is None


def test_only_tesseras_maps_get_items_and_a_foreign_file_in_the_way_is_refused(tmp_path):
    write_geotiff(tmp_path / "theirs_classes.tif", np.zeros((8, 8), np.uint8))  # no lineage
    assert write_stac(tmp_path, []) is None and not (tmp_path / CATALOG_FILE).exists()
    maps = class_map(tmp_path / "l8_classes.tif")
    item_path(maps).write_text('{"notes": "mine"}')
    with pytest.raises(OutputRefusedError, match=r"l8_item\.json: exists and is not a Tessera"):
        write_stac(tmp_path, [str(maps)])
    assert item_path(maps).read_text() == '{"notes": "mine"}'
    assert not (tmp_path / CATALOG_FILE).exists()
    item_path(maps).unlink()
    (tmp_path / CATALOG_FILE).write_text('{"type": "Catalog", "id": "my-own"}')
    with pytest.raises(OutputRefusedError, match=r"catalog\.json: exists and is not a Tessera"):
        write_stac(tmp_path, [str(maps)])
    assert not item_path(maps).exists()


def test_stac_validator_finds_what_is_wrong_with_an_item(tmp_path):
    """The offline schema check is a real one: a broken Item fails it."""
    maps = class_map(tmp_path / "l8_classes.tif")
    write_stac(tmp_path, [str(maps)])
    item = json.loads(item_path(maps).read_text())
    item["bbox"] = "everywhere"
    (tmp_path / "broken.json").write_text(json.dumps(item))
    assert any("bbox" in e for e in stac_validator_errors(tmp_path / "broken.json"))
