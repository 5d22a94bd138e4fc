"""A STAC Item as a source: its assets are the bands, by key or band name, read from their
hrefs (local, or over HTTP by GDAL's range reads); what is missing is one line."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml

from tessera.tasks.sources.catalog import read_catalog
from tessera.tasks.store.reader import TileStore
from tests.helpers import REPO, landsat_like

BANDS = ["B1", "B2", "B3", "B4", "B8"]


def _item(folder: Path, href: str = "") -> Path:
    """A STAC 1.1 Item of a Landsat-like band stack: assets keyed by band, with their
    ``eo:bands`` common names; hrefs relative to the Item, or below ``href``."""
    landsat_like(folder)
    common = {"B1": "coastal", "B2": "blue", "B3": "green", "B4": "red", "B8": "pan"}
    item = {
        "type": "Feature", "stac_version": "1.1.0", "id": "l8-scene",
        "stac_extensions": ["https://stac-extensions.github.io/eo/v1.1.0/schema.json"],
        "geometry": None, "properties": {"datetime": "2026-01-01T00:00:00Z"}, "links": [],
        "assets": {
            b: {"href": f"{href}l8_{b}.tif", "type": "image/tiff; application=geotiff",
                "roles": ["data"], "eo:bands": [{"name": b, "common_name": common[b]}]}
            for b in BANDS
        } | {"thumbnail": {"href": "thumb.png", "type": "image/png", "roles": ["thumbnail"]}},
    }  # fmt: skip
    path = folder / "item.json"
    path.write_text(json.dumps(item))
    return path


def _same_tiles(a: Path, b: Path) -> None:
    sa, sb = TileStore.open(a), TileStore.open(b)
    assert len(sa) == len(sb) > 0
    for i in range(len(sa)):
        np.testing.assert_array_equal(sa[i]["image"], sb[i]["image"])


def _tile(cli, cwd: Path, *args: object) -> None:
    rc, _, err = cli("tile", *args, "--size", 16, "--set", "tile.min_valid_fraction=0", cwd=cwd)
    assert rc == 0, err


def test_an_items_assets_are_the_bands_of_the_stack_they_name(tmp_path, cli):
    item = _item(tmp_path / "scene")
    _tile(cli, tmp_path, "--input", item, "--out", "from-stac")
    files = [tmp_path / "scene" / f"l8_{b}.tif" for b in BANDS]
    _tile(cli, tmp_path, *[a for f in files for a in ("--input", f)], "--stack", "--out", "files")
    (source,) = TileStore.open(tmp_path / "from-stac").info.sources.values()
    assert source.bands == BANDS  # by asset key; the thumbnail is not a band
    _same_tiles(tmp_path / "from-stac", tmp_path / "files")
    # a source picks bands by common name, in its own order
    params = {"ingest": {"sources": [{"name": "l8", "kind": "stac", "paths": ["scene/item.json"],
                                      "stac": {"assets": ["red", "green", "B2"]}}]}}  # fmt: skip
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    rc, _, err = cli("ingest", cwd=tmp_path)
    assert rc == 0, err
    (rec,) = read_catalog(tmp_path / "outputs" / "catalog.parquet")
    assert rec.kind == "geotiff" and rec.band_names == ["red", "green", "B2"]
    assert rec.band_files == ["scene/l8_B4.tif", "scene/l8_B3.tif", "scene/l8_B2.tif"]


def _serve(folder: Path, ranges: bool = True) -> tuple[subprocess.Popen[bytes], str]:
    """A web server on 127.0.0.1 serving ``folder`` (with byte ranges, or Python's own,
    without); its process and URL, once it answers (30 s at most)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    if ranges:
        args = ["-m", "tests.sources.range_http", str(port), str(folder)]
    else:
        args = ["-m", "http.server", str(port), "--bind", "127.0.0.1", "-d", str(folder)]
    proc = subprocess.Popen([sys.executable, *args], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc, f"http://127.0.0.1:{port}/"
        time.sleep(0.05)
    proc.kill()  # stopped by its PID before the test fails
    proc.wait(timeout=10)
    pytest.fail(f"the test web server on port {port} did not answer within 30 s")


@pytest.fixture
def web(tmp_path) -> Iterator[tuple[str, Path]]:
    """A COG host on 127.0.0.1 (byte ranges) serving a folder, stopped by its PID after the
    test; yields its URL and the folder."""
    folder = tmp_path / "www"
    folder.mkdir()
    proc, url = _serve(folder)
    try:
        yield url, folder
    finally:
        proc.kill()
        proc.wait(timeout=10)


def test_an_item_on_the_web_is_read_from_its_hrefs_by_gdal(tmp_path, cli, web):
    url, folder = web
    _item(folder, href=url)  # absolute http hrefs
    _item(tmp_path / "local")
    _tile(cli, tmp_path, "--input", f"{url}item.json", "--out", "from-web")
    _tile(cli, tmp_path, "--input", tmp_path / "local" / "item.json", "--out", "from-disk")
    _same_tiles(tmp_path / "from-web", tmp_path / "from-disk")
    (scene,) = TileStore.open(tmp_path / "from-web").info.scenes.values()
    assert scene["files"][0] == f"/vsicurl/{url.replace('//', '/', 1)}l8_B1.tif"
    assert scene["sha256"][0].startswith("http-etag:")


def test_a_missing_asset_or_an_unreachable_href_is_one_line_and_writes_nothing(tmp_path, cli):
    item = _item(tmp_path / "scene")
    params = {"ingest": {"sources": [{"name": "l8", "kind": "stac", "paths": ["scene/item.json"],
                                      "stac": {"assets": ["B1", "B9"]}}]}}  # fmt: skip
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    rc, _, err = cli("ingest", cwd=tmp_path)
    assert rc == 1 and "item.json: Item l8-scene: no asset or band named B9" in err, err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "outputs").exists()
    (tmp_path / "scene" / "l8_B3.tif").unlink()
    rc, _, err = cli("tile", "--input", item, "--out", "t", cwd=tmp_path)
    assert rc == 1 and "l8_B3.tif" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "t").exists()
    rc, _, err = cli("tile", "--input", tmp_path / "nowhere.json", "--out", "t", cwd=tmp_path)
    assert rc == 1 and "nowhere.json: not a readable STAC Item or Collection" in err, err


def test_a_server_without_byte_ranges_is_refused_in_one_line(tmp_path, cli):
    """GDAL reads a COG on the web by ranges; a server that answers with the whole file
    would give zeros where a band is warped: refused before any tile is cut."""
    folder = tmp_path / "www"
    folder.mkdir()
    proc, url = _serve(folder, ranges=False)
    try:
        _item(folder, href=url)
        rc, _, err = cli("tile", "--input", f"{url}item.json", "--out", "t", cwd=tmp_path)
    finally:
        proc.kill()
        proc.wait(timeout=10)
    assert rc == 1 and "does not serve byte ranges" in err, err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "t").exists()
