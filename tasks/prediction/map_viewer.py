"""The browser viewer of ``tessera view``: a class or cluster map (COG) over its scene on a
Leaflet web map, its tiles rendered by titiler, with the legend and an opacity slider; a NIfTI
class map over its volume in NiiVue's three orthogonal views. Every script and style comes
from this machine (the npm packages beside this module), nothing from the internet."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tessera.tasks.prediction.map_lineage import read_lineage

STATIC = Path(__file__).parent / "viewer_static"
VENDOR = STATIC / "node_modules"
MAP_SUFFIXES = ("_classes.tif", "_classes.nii.gz")
VENDOR_FILES = ("leaflet/dist/leaflet.js", "leaflet/dist/leaflet.css",
                "@niivue/niivue/dist/niivue.umd.js")  # fmt: skip


class ViewerError(ValueError):
    """Nothing to view, or the viewer's scripts are missing: one line."""


@dataclass
class ViewMap:
    """One map the viewer shows: its file, the legend and the scene or volume under it."""

    key: str
    path: Path
    volume: bool
    legend: list[dict[str, Any]] = field(default_factory=list)
    scene: Path | None = None

    def url(self, base: str) -> str:
        """The map's page on the viewer at ``base``."""
        return f"{base.rstrip('/')}/map/{self.key}"


def check_scripts() -> None:
    """Refuse in one line when the npm packages the pages load are not installed."""
    missing = [f for f in VENDOR_FILES if not (VENDOR / f).is_file()]
    if missing:
        raise ViewerError(
            f"{VENDOR / missing[0]}: the viewer's scripts are not installed; run `make setup` "
            f"(npm ci --prefix {STATIC})"
        )


def map_keys(target: Path) -> dict[Path, str]:
    """Each map the viewer serves at ``target`` (a map file, or the Tessera class maps below
    a folder) and its key, the page's address below ``/map/``."""
    if target.is_file():
        files = [target]
    else:
        files = sorted(p for p in target.rglob("*") if p.name.endswith(MAP_SUFFIXES))
    return {f: f"{i}/{f.name}" for i, f in enumerate(files)}


def find_maps(target: Path) -> list[ViewMap]:
    """The maps at ``target``: a map file, or the Tessera class maps below a folder."""
    if not target.exists():
        raise ViewerError(f"{target}: no such file or folder")
    maps = [_view_map(f, key) for f, key in map_keys(target).items()]
    if not maps:
        raise ViewerError(f"{target}: no class map (*_classes.tif or *_classes.nii.gz) in it")
    return maps


def _scene(lineage: dict[str, str], map_file: Path) -> Path | None:
    """The input the map was made from, where it is still on this machine: its path as
    written (relative to where predict ran: tried from here, then beside the maps' folder)."""
    given = lineage.get("tessera_input", "").split(" (")[0]
    if not given:
        return None
    for candidate in (Path(given), map_file.parent.parent / given, map_file.parent / given):
        if candidate.is_file():
            return candidate.resolve()
    return None


def _view_map(path: Path, key: str) -> ViewMap:
    if path.name.endswith((".nii.gz", ".nii")):
        lineage = read_lineage(path)
        names = [n for n in lineage.get("classes", "").split(",") if n]
        legend = [{"value": v, "name": n, "color": _hex(v)} for v, n in enumerate(names)]
        return ViewMap(key, path.resolve(), True, legend, _scene(lineage, path))
    import rasterio

    from tessera.tasks.prediction.stac_items import map_classes

    try:
        with rasterio.open(path) as ds:
            tags = ds.tags()
            classes = map_classes(ds, tags)
            crs = ds.crs
    except rasterio.errors.RasterioIOError as exc:
        raise ViewerError(f"{path}: not a readable map ({exc})") from None
    if crs is None:
        raise ViewerError(f"{path}: a map without a CRS cannot be placed on a web map")
    legend = [
        {"value": c["value"], "name": c.get("title", c["name"]),
         "color": "#" + c.get("color_hint", "808080")}
        for c in classes if not c.get("nodata")
    ]  # fmt: skip
    return ViewMap(key, path.resolve(), False, legend, _scene(tags, path))


def _hex(value: int) -> str:
    from tessera.models.palette import CLASS_PALETTE

    return "#{:02x}{:02x}{:02x}".format(*CLASS_PALETTE[value % len(CLASS_PALETTE)])


def scene_rescale(path: Path) -> tuple[float, float]:
    """The 2nd and 98th percentiles of a scene's first band (read decimated), its display
    stretch."""
    import rasterio

    with rasterio.open(path) as ds:
        step = max(1, max(ds.width, ds.height) // 512)
        out = (1, max(1, ds.height // step), max(1, ds.width // step))
        data = ds.read(1, out_shape=out, masked=True).astype(np.float64)
    values = data.compressed()
    if values.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(values, [2, 98])
    return float(lo), float(hi if hi > lo else lo + 1)


def geographic_bounds(path: Path) -> list[float]:
    """A raster's bounds in WGS 84 longitude and latitude (west, south, east, north)."""
    import rasterio
    from rasterio.warp import transform_bounds

    with rasterio.open(path) as ds:
        return list(transform_bounds(ds.crs, "EPSG:4326", *ds.bounds, densify_pts=21))


def page(view: ViewMap, maps: list[ViewMap]) -> str:
    """The HTML page of one map."""
    template = "volume.html" if view.volume else "raster.html"
    config: dict[str, Any] = {
        "map": view.key,
        "name": view.path.name,
        "legend": view.legend,
        "scene": bool(view.scene),
        "others": [{"name": m.path.name, "url": f"/map/{m.key}"} for m in maps],
    }
    if not view.volume:
        config["bounds"] = geographic_bounds(view.path)
        if view.scene is not None:
            config["rescale"] = scene_rescale(view.scene)
    html = (STATIC / template).read_text()
    return html.replace("/*CONFIG*/null", json.dumps(config))


def index_page(maps: list[ViewMap]) -> str:
    """The list of maps, each a link to its page."""
    items = "".join(f'<li><a href="/map/{m.key}">{m.path.name}</a></li>' for m in maps)
    return f"<!doctype html><title>Tessera maps</title><h1>Tessera maps</h1><ul>{items}</ul>"


def build_app(maps: list[ViewMap]) -> Any:
    """The viewer's web application: pages, titiler's tiles of the maps and scenes (and of
    nothing else), the volumes' files, and the npm packages' scripts."""
    from fastapi import FastAPI, HTTPException, Query
    from fastapi.responses import FileResponse, HTMLResponse
    from fastapi.staticfiles import StaticFiles
    from titiler.core.errors import DEFAULT_STATUS_CODES, add_exception_handlers
    from titiler.core.factory import TilerFactory

    by_key = {m.key: m for m in maps}

    def served(key: str, scene: bool = False) -> Path:
        view = by_key.get(key)
        path = None if view is None else (view.scene if scene else view.path)
        if path is None:
            raise HTTPException(404, f"no map {key}")
        return path

    def dataset(
        map: str = Query(description="The map's key"),
        scene: bool = Query(default=False, description="Its scene rather than the map"),
    ) -> str:
        return str(served(map, scene))

    app = FastAPI(title="Tessera viewer", openapi_url=None, docs_url=None, redoc_url=None)
    tiler = TilerFactory(router_prefix="/cog", path_dependency=dataset, add_viewer=False)
    app.include_router(tiler.router, prefix="/cog")
    add_exception_handlers(app, DEFAULT_STATUS_CODES)  # a tile outside the map: 404
    app.mount("/vendor", StaticFiles(directory=VENDOR), name="vendor")
    app.mount("/static", StaticFiles(directory=STATIC, follow_symlink=False), name="static")

    @app.get("/", response_class=HTMLResponse)
    def home() -> str:
        return index_page(maps)

    @app.get("/map/{index}/{name}", response_class=HTMLResponse)
    def map_page(index: str, name: str) -> str:
        key = f"{index}/{name}"
        if key not in by_key:
            raise HTTPException(404, f"no map {key}")
        return page(by_key[key], maps)

    @app.get("/file/{index}/{name}")
    def volume_file(index: str, name: str, scene: bool = False) -> FileResponse:
        path = served(f"{index}/{name}", scene)
        return FileResponse(path, filename=path.name)

    return app
