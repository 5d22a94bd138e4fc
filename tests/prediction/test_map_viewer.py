"""``tessera view`` in a real headless Chromium: a COG class map over its scene on the web map
(its tiles answered by titiler), and a NIfTI class map over its volume in NiiVue's three views;
the screenshots (test artefacts, not committed) show the classes in their colours."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from tessera.tasks.cluster.processes import free_port
from tessera.tasks.prediction.map_viewer import ViewerError, find_maps
from tessera.tasks.prediction.raster_maps import MapFiles
from tessera.tasks.prediction.volume_maps import VolumeScores, write_volume_maps
from tests.helpers import REPO, stop_process_group, write_geotiff
from tests.prediction.test_stac_items import class_map

pytestmark = pytest.mark.slow
TESSERA = str(Path(os.sys.executable).parent / "tessera")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def chromium() -> str:
    """Debian's Chromium; without it the tests are skipped in one line (failed where
    ``TESSERA_REQUIRE_BROWSER=1``, as in CI)."""
    if CHROMIUM is None:
        line = "viewer tests: no chromium; install it with: apt-get install chromium"
        if os.environ.get("TESSERA_REQUIRE_BROWSER") == "1":
            pytest.fail(line)
        pytest.skip(line)
    return CHROMIUM


def _view(target: Path, cwd: Path, shot: Path, page: str, browser: str) -> str:
    """Run ``tessera view`` (stopped by its PID after), load ``page`` in headless Chromium
    and screenshot it; returns the viewer's access log."""
    port = free_port()
    log = cwd / f"viewer-{port}.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [TESSERA, "view", str(target), "--port", str(port), "--access-log"],
            cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while "Uvicorn running" not in log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        _screenshot(browser, f"http://127.0.0.1:{port}{page}", shot, cwd / "chromium-profile")
    finally:
        stop_process_group(proc)
    return log.read_text()


def _screenshot(browser: str, url: str, shot: Path, profile: Path) -> None:
    """Headless Chromium's screenshot of ``url`` (120 s at most); the browser and its helper
    processes, a process group of their own, are stopped by its PID whatever happened."""
    proc = subprocess.Popen(
        [browser, "--headless", "--no-sandbox", "--use-angle=swiftshader",
         "--enable-unsafe-swiftshader", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", "--window-size=800,600",
         "--virtual-time-budget=15000", f"--screenshot={shot}", url],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        out, _ = proc.communicate(timeout=120)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 9)
        proc.wait(timeout=30)
    assert proc.returncode == 0, out[-3000:]


def _share(shot: Path, rgb: tuple[int, int, int], tolerance: int = 40) -> float:
    """The share of the screenshot's pixels within ``tolerance`` of ``rgb``."""
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    return float((np.abs(pixels - np.array(rgb)).max(axis=-1) <= tolerance).mean())


def test_a_class_map_over_its_scene_on_the_web_map(tmp_path, chromium):
    write_geotiff(tmp_path / "data" / "l8.tif", np.full((40, 60), 9000, np.uint16))  # its input
    class_map(tmp_path / "maps" / "l8_classes.tif", names=("clear", "cloud"))
    shot = tmp_path / "raster.png"
    log = _view(tmp_path / "maps", tmp_path, shot, "/map/0/l8_classes.tif", chromium)
    requests = [line for line in log.splitlines() if '"GET ' in line]
    tiles = [line for line in requests if "/cog/tiles/" in line]
    assert any('/map/0/l8_classes.tif HTTP/1.1" 200' in line for line in requests), log
    assert any("scene=true" in t and '" 200' in t for t in tiles), log  # the scene under it
    assert sum('" 200' in t and "scene=true" not in t for t in tiles) >= 2, log
    assert not any('" 5' in line for line in requests), log  # no server error
    # the scene is flat grey (its own 2-98 % stretch), the map at 80 % over it: the classes'
    # colours (10, 20, 30) and (200, 100, 0), blended
    assert _share(shot, (34, 41, 49)) > 0.05, "no 'clear' pixels"
    assert _share(shot, (185, 105, 25)) > 0.05, "no 'cloud' pixels"


def test_a_nifti_class_map_over_its_volume_in_three_views(tmp_path, chromium):
    shape = (40, 48, 36)
    grid = np.meshgrid(*[np.arange(n) - n / 2 for n in shape], indexing="ij")
    r = np.sqrt(sum((g / (n / 2.5)) ** 2 for g, n in zip(grid, shape, strict=True)))
    best = (np.where(r < 1, 1, 0) + np.where(r < 0.6, 1, 0)).astype(np.uint8)
    nib.save(nib.Nifti1Image((best * 60 + 20).astype(np.float32), np.eye(4)), tmp_path / "t1.nii")
    scores = VolumeScores(np.zeros((3, *shape), np.uint8), best, np.ones(shape, bool))
    lineage = {"tessera_model": "toy", "tessera_model_version": "1", "tessera_input": "t1.nii"}
    write_volume_maps(MapFiles(tmp_path / "maps" / "t1_classes.nii.gz"), scores, np.eye(4),
                      ["background", "gm", "wm"], lineage)  # fmt: skip
    shot = tmp_path / "volume.png"
    log = _view(tmp_path / "maps", tmp_path, shot, "/map/0/t1_classes.nii.gz", chromium)
    assert '/file/0/t1_classes.nii.gz?scene=true HTTP/1.1" 200' in log, log
    assert '/file/0/t1_classes.nii.gz HTTP/1.1" 200' in log, log
    assert '/vendor/@niivue/niivue/dist/niivue.umd.js HTTP/1.1" 200' in log, log
    # gm (255, 127, 14) and wm (44, 160, 44) at 60 % over the grey volume, in three planes
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    orange = (pixels[..., 0] > 120) & (pixels[..., 0] > pixels[..., 1] + 40) & (pixels[..., 2] < 80)
    green = (pixels[..., 1] > 120) & (pixels[..., 1] > pixels[..., 0] + 30)
    assert orange.mean() > 0.03 and green.mean() > 0.03, (orange.mean(), green.mean())
    left, right = orange[:, :400].mean(), orange[:, 400:].mean()
    assert left > 0.01 and right > 0.01  # more than one view drawn


def test_nothing_to_view_and_missing_scripts_are_one_line(tmp_path, cli):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ViewerError, match="no class map"):
        find_maps(tmp_path / "empty")
    rc, _, err = cli("view", tmp_path / "nowhere", cwd=tmp_path)
    assert rc == 1 and "nowhere: no such file or folder" in err and len(err.splitlines()) == 1
    assert (REPO / "tasks" / "prediction" / "viewer_static" / "package-lock.json").is_file()
