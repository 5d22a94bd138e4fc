"""STAC for the maps of ``tessera predict``: a STAC Item per mapped scene, in a Catalog next to
the maps (``catalog.json``). Each Item is read off its maps' own files (grid, lineage tags,
class names, colour table), so it says what the files say:

- the geometry and bbox in WGS 84, and the ``projection`` extension (code, shape, transform);
- the class map as the ``classes`` asset with the ``classification`` extension (each class's
  value, name and colour; 255 the nodata value), and the scene's other maps as assets;
- the ``processing`` extension (Tessera's version, the lineage in words) and Tessera's lineage
  fields: model, version, its reference, git SHA, the input's sha256.

Volumes (NIfTI maps) have no place on the Earth and get no Item.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import rasterio
from rasterio.warp import transform_bounds, transform_geom

from tessera.models.version import version
from tessera.tasks.base.files import atomic_write_json
from tessera.tasks.base.outputs import check_output_file
from tessera.tasks.prediction.map_lineage import is_prediction, same_run

CATALOG_FILE = "catalog.json"
CATALOG_ID = "tessera-predictions"
ITEM_SUFFIX = "_item.json"  # beside <scene>_classes.tif: <scene>_item.json
STAC_VERSION = "1.1.0"
PROJECTION = "https://stac-extensions.github.io/projection/v2.0.0/schema.json"
CLASSIFICATION = "https://stac-extensions.github.io/classification/v2.0.0/schema.json"
PROCESSING = "https://stac-extensions.github.io/processing/v1.2.0/schema.json"
COG_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"
# the maps of one scene besides its class map (tasks.prediction.apply.map_files)
OTHER_MAPS = {
    "probabilities": "per-class probabilities (p x 255)",
    "reconstruction": "reconstruction, in source units",
    "anomaly": "anomaly: mean absolute reconstruction error",
}
# the map tags (tasks.prediction.apply) an Item carries as tessera: fields
LINEAGE = {
    "tessera_model": "tessera:model",
    "tessera_model_version": "tessera:model_version",
    "tessera_model_ref": "tessera:model_ref",
    "tessera_git_sha": "tessera:git_sha",
    "tessera_input_sha256": "tessera:input_sha256",
    "tessera_input": "tessera:input",
}


def scene_of(class_map: Path) -> str:
    """The scene's stem of ``<scene>_classes.tif``."""
    return class_map.name.removesuffix(".tif").removesuffix("_classes")


def item_path(class_map: Path) -> Path:
    """Where the Item of a class map goes: ``<scene>_item.json`` beside it."""
    return class_map.with_name(scene_of(class_map) + ITEM_SUFFIX)


def _geometry(ds: Any) -> tuple[dict[str, Any] | None, list[float] | None]:
    """The footprint in WGS 84 (GeoJSON) and its bbox; None for a map without a CRS."""
    if ds.crs is None:
        return None, None
    b = ds.bounds
    left, right = min(b.left, b.right), max(b.left, b.right)
    bottom, top = min(b.bottom, b.top), max(b.bottom, b.top)
    steps = [i / 20 for i in range(20)]  # 20 points a side, as the bbox is densified
    ring = (
        [[left + (right - left) * t, bottom] for t in steps]
        + [[right, bottom + (top - bottom) * t] for t in steps]
        + [[right - (right - left) * t, top] for t in steps]
        + [[left, top - (top - bottom) * t] for t in steps]
        + [[left, bottom]]
    )
    polygon = {"type": "Polygon", "coordinates": [ring]}
    geometry = transform_geom(ds.crs, "EPSG:4326", polygon, precision=7)
    bbox = transform_bounds(ds.crs, "EPSG:4326", *ds.bounds, densify_pts=21)
    return geometry, [round(v, 7) for v in bbox]


def _projection(ds: Any) -> dict[str, Any]:
    """The ``projection`` extension's fields of a map."""
    out: dict[str, Any] = {"proj:shape": [ds.height, ds.width]}
    out["proj:transform"] = [float(v) for v in list(ds.transform)[:6]]
    if ds.crs is None:
        return out | {"proj:code": None}
    epsg = ds.crs.to_epsg()
    out["proj:bbox"] = [float(v) for v in ds.bounds]
    if epsg:
        return out | {"proj:code": f"EPSG:{epsg}"}
    return out | {"proj:code": None, "proj:wkt2": ds.crs.to_wkt()}


def _spec_name(name: str, taken: set[str]) -> str:
    """A class name as the classification extension allows (letters, digits, ``-``, ``_``),
    unique among ``taken``."""
    base = re.sub(r"[^0-9A-Za-z_-]+", "_", name).strip("_") or "class"
    out, n = base, 2
    while out in taken:
        out, n = f"{base}_{n}", n + 1
    taken.add(out)
    return out


def map_classes(ds: Any, tags: dict[str, str]) -> list[dict[str, Any]]:
    """The ``classification:classes`` of a class map: each class's value (its id), name (as
    the extension allows), title (the name as given) and colour, then the nodata value."""
    ids = sorted(int(k[6:]) for k in tags if re.fullmatch(r"class_\d+", k))
    try:
        table = ds.colormap(1)
    except ValueError:  # no colour table
        table = {}
    classes: list[dict[str, Any]] = []
    taken: set[str] = set()
    for value in ids:
        title = tags[f"class_{value}"]
        entry: dict[str, Any] = {"value": value, "name": _spec_name(title, taken), "title": title}
        if value in table:
            entry["color_hint"] = "{:02X}{:02X}{:02X}".format(*table[value][:3])
        classes.append(entry)
    if ds.nodata is not None:
        nodata = int(ds.nodata)
        classes.append({"value": nodata, "name": _spec_name("nodata", taken), "nodata": True})
    return classes


def scene_item(class_map: Path) -> dict[str, Any]:
    """The STAC Item (a dict) of one scene's maps: ``class_map`` and those of
    :data:`OTHER_MAPS` beside it. Its datetime is when the class map was written: Tessera
    does not know when the scene was acquired."""
    with rasterio.open(class_map) as ds:
        tags = ds.tags()
        geometry, bbox = _geometry(ds)
        properties = _projection(ds)
        classes = map_classes(ds, tags)
    made = datetime.fromtimestamp(class_map.stat().st_mtime, UTC).isoformat()
    made = made.replace("+00:00", "Z")
    properties |= {"datetime": made, "processing:datetime": made}
    properties |= {LINEAGE[k]: v for k, v in tags.items() if k in LINEAGE}
    properties["processing:software"] = {"tessera": version()}
    properties["processing:lineage"] = (
        f"Mapped by Tessera with {tags.get('tessera_model_ref', 'a model')} "
        f"(version {tags.get('tessera_model_version', '?')}) from {tags.get('tessera_input', '?')}"
    )
    scene = scene_of(class_map)
    assets: dict[str, Any] = {
        "classes": {
            "href": f"./{class_map.name}",
            "type": COG_TYPE,
            "title": "class map",
            "roles": ["data"],
            "classification:classes": classes,
        }
    }
    for key, title in OTHER_MAPS.items():
        other = class_map.with_name(f"{scene}_{key}.tif")
        if other.is_file() and same_run(other, tags):
            assets[key] = {"href": f"./{other.name}", "type": COG_TYPE, "title": title,
                           "roles": ["data"]}  # fmt: skip
    item: dict[str, Any] = {
        "type": "Feature",
        "stac_version": STAC_VERSION,
        "stac_extensions": [PROJECTION, CLASSIFICATION, PROCESSING],
        "id": scene,
        "geometry": geometry,
        "properties": properties,
        "links": [
            {"rel": "root", "href": f"./{CATALOG_FILE}", "type": "application/json"},
            {"rel": "parent", "href": f"./{CATALOG_FILE}", "type": "application/json"},
        ],
        "assets": assets,
    }
    if bbox is not None:
        item["bbox"] = bbox
    return item


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def is_stac_item(path: Path) -> bool:
    """Whether ``path`` holds a STAC Item this module wrote."""
    data = _json(path)
    props = data.get("properties")
    return data.get("type") == "Feature" and isinstance(props, dict) and "tessera:model" in props


def is_stac_catalog(path: Path) -> bool:
    """Whether ``path`` holds the STAC Catalog this module writes."""
    data = _json(path)
    return data.get("type") == "Catalog" and data.get("id") == CATALOG_ID


def check_stac_files(out_dir: Path, class_maps: list[Path]) -> None:
    """Refuse (OutputRefusedError, one line naming it) a Catalog or Item path of these class
    maps that holds anything but Tessera's: before any map is written, as the maps' paths."""
    if class_maps:
        check_output_file(out_dir / CATALOG_FILE, is_stac_catalog, "Tessera STAC Catalog")
    for m in class_maps:
        check_output_file(item_path(m), is_stac_item, "Tessera STAC Item")


def catalog(item_files: list[Path]) -> dict[str, Any]:
    """The Catalog (a dict) that links ``item_files``, which sit beside it."""
    links = [{"rel": "root", "href": f"./{CATALOG_FILE}", "type": "application/json"}]
    links += [
        {"rel": "item", "href": f"./{p.name}", "type": "application/geo+json"}
        for p in sorted(item_files)
    ]
    return {
        "type": "Catalog",
        "stac_version": STAC_VERSION,
        "id": CATALOG_ID,
        "title": "Tessera predictions",
        "description": "Maps made by tessera predict: one Item per scene.",
        "links": links,
    }


def write_stac(out_dir: Path, written: list[str]) -> Path | None:
    """The Items of the scenes mapped into ``out_dir`` (those of ``written``, and any class
    map there without one), then the Catalog of the Items of every class map there; returns the
    Catalog's path, or None when ``out_dir`` holds no raster class map of Tessera's. A file in
    the way that Tessera did not write is refused (OutputRefusedError naming it) before
    anything is written: the flow checks the same paths before it maps
    (:func:`check_stac_files`)."""
    fresh = {Path(f).resolve() for f in written}
    maps, todo = [], []
    for m in sorted(p for p in out_dir.glob("*_classes.tif") if p.is_file()):
        new, has_item = m.resolve() in fresh, item_path(m).exists()
        # only new maps, and maps without an Item, are opened: the others have theirs already
        if has_item or new or is_prediction(m):
            maps.append(m)
            if new or not has_item:
                todo.append(m)
    if not maps:
        return None
    check_stac_files(out_dir, todo)
    cat = out_dir / CATALOG_FILE
    for m in todo:
        atomic_write_json(item_path(m), scene_item(m))
    items = [item_path(m) for m in maps if is_stac_item(item_path(m))]
    atomic_write_json(cat, catalog(items))
    return cat
