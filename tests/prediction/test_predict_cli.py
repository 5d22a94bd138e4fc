"""``tessera predict`` end to end: a registered champion, an experiment, and one-line refusals."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import rasterio

from tests.helpers import TINY_EXPERIMENTS, training_dir, write_geotiff

EXPERIMENTS = {k: TINY_EXPERIMENTS[k] for k in ("tiny-seg", "tiny-ssvae")}


@pytest.fixture(scope="module")
def trained(prefect_api: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tiny-seg and tiny-ssvae trained; tiny-seg evaluated and registered as champion."""
    from tessera.flows.cli import run

    root = training_dir(tmp_path_factory.mktemp("predict"), EXPERIMENTS)
    params = ["--params", str(root / "params.yaml")]
    for name in EXPERIMENTS:
        assert run(["train", *params, "--experiment", name]) == 0
    assert run(["evaluate", *params, "--experiment", "tiny-seg"]) == 0
    assert run(["register", *params, "--experiment", "tiny-seg"]) == 0
    return root


def test_the_champion_maps_a_scene_on_its_exact_grid_once_per_version(trained, cli):
    ref = "models:/tessera-tiny-seg@champion"
    rc, out, err = cli("predict", "--model", ref, "--input", "scene.tif", "--out", "maps",
                       "--probabilities", cwd=trained)  # fmt: skip
    assert rc == 0, err
    assert "predicted with tessera-tiny-seg 1: 2 maps" in out
    classes = trained / "maps" / "scene_classes.tif"
    sha = hashlib.sha256((trained / "scene.tif").read_bytes()).hexdigest()
    with rasterio.open(classes) as ds, rasterio.open(trained / "scene.tif") as src:
        assert (ds.crs, ds.transform, ds.shape) == (src.crs, src.transform, src.shape)
        assert ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG" and ds.nodata == 255
        tags = ds.tags()
        registered = ds.read(1)
    assert tags["tessera_model"] == "tessera-tiny-seg" and tags["tessera_model_version"] == "1"
    assert tags["tessera_input_sha256"] == sha and len(tags["tessera_git_sha"]) >= 4
    assert set(np.unique(registered)) <= {0, 1, 2}
    # the same version again: skipped, the file untouched; --force maps it again
    stamp = classes.stat().st_mtime_ns
    rc, out, _ = cli("predict", "--model", ref, "--input", "scene.tif", "--out", "maps",
                     "--probabilities", cwd=trained)  # fmt: skip
    assert rc == 0 and "0 maps, 1 scenes already mapped" in out
    assert classes.stat().st_mtime_ns == stamp
    rc, out, _ = cli("predict", "--model", ref, "--input", "scene.tif", "--out", "maps",
                     "--probabilities", "--force", cwd=trained)  # fmt: skip
    assert rc == 0 and "2 maps" in out and classes.stat().st_mtime_ns != stamp
    # the experiment's checkpoint is the same model: the same map from the graph and the module
    rc, _, err = cli("predict", "--model", "tiny-seg", "--input", "scene.tif", "--out", "ckpt",
                     cwd=trained)  # fmt: skip
    assert rc == 0, err
    with rasterio.open(trained / "ckpt" / "scene_classes.tif") as ds:
        assert (ds.read(1) == registered).mean() > 0.999


def test_a_per_window_model_maps_at_the_tile_stride(trained, cli):
    rc, _, err = cli("predict", "--model", "tiny-ssvae", "--input", "scene.tif", "--out", "w",
                     cwd=trained)  # fmt: skip
    assert rc == 0, err
    with rasterio.open(trained / "w" / "scene_classes.tif") as ds:
        assert ds.shape == (8, 8) and ds.tags()["cell_pixels"] == "16"  # 128 px / 16 px tiles


def test_misfits_unknown_models_and_a_down_store_are_one_line_and_write_nothing(trained, cli):
    from tessera.flows.local_api import free_port

    three = write_geotiff(trained / "three.tif", np.ones((3, 32, 32), np.uint16))
    junk = trained / "models" / "tiny-seg" / "checkpoints" / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint")
    down = f"train.tracking_uri=http://127.0.0.1:{free_port()}"
    cases = [
        (["--model", "tiny-seg", "--input", three],
         "tessera: three.tif: 3 bands (b1, b2, b3), but tiny-seg reads 4"),
        (["--model", "models:/nope@champion", "--input", "scene.tif"],
         "models:/nope@champion: no such registered model version"),
        (["--model", "nope", "--input", "scene.tif"],
         "nope: not a model URI (models:/NAME@ALIAS), an experiment of params.yaml"),
        (["--model", "models:/tessera-tiny-seg@champion", "--input", "scene.tif",
          "--set", down, "--set", "registry.retries=0"], "tracking store unreachable"),
        (["--model", str(junk), "--input", "scene.tif"], f"{junk}: not a readable checkpoint"),
    ]  # fmt: skip
    for args, words in cases:
        rc, _, err = cli("predict", *args, "--out", "refused", cwd=trained)
        assert rc == 1 and len(err.strip().splitlines()) == 1, err
        assert words in err and "Traceback" not in err, err
        assert not (trained / "refused").exists()
