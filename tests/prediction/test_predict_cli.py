"""``tessera predict`` end to end: a registered champion, an experiment, and one-line refusals."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio

from tests.helpers import relocated, write_geotiff
from tests.prediction.stac_validation import stac_validator_errors


@pytest.fixture(scope="module")
def trained(tiny_trained, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny experiments trained (a copy of the session's); tiny-seg and tiny-vae evaluated
    and registered as champions."""
    from contextlib import chdir

    from tessera.flows.cli import run

    root = relocated(tiny_trained.root, tmp_path_factory.mktemp("predict") / "project")
    with chdir(root):  # the catalogue's scenes and the outputs are the project's
        for name in ("tiny-seg", "tiny-vae"):
            assert run(["evaluate", "--experiment", name]) == 0
            assert run(["register", "--experiment", name]) == 0
    return root


def test_a_registered_model_has_an_mlm_item_and_predict_takes_its_contract_from_it(trained, cli):
    from stac_model.schema import MLModelProperties

    item_file = trained / "outputs" / "registry" / "tiny-seg_mlm.json"
    item = json.loads(item_file.read_text())
    assert stac_validator_errors(item_file) == []  # STAC core (the MLM schema is online only)
    props = item["properties"]
    MLModelProperties.model_validate(props)  # stac-model's own schema of the mlm: fields
    descriptor = props["tessera:descriptor"]
    (model_input,) = props["mlm:input"]
    assert model_input["bands"] == descriptor["bands"] and props["mlm:framework"] == "pytorch"
    assert model_input["input"]["shape"] == [-1, len(descriptor["bands"]), descriptor["window"],
                                             descriptor["window"]]  # fmt: skip
    assert [s["mean"] for s in model_input["value_scaling"]] == descriptor["shift"]
    classes = props["mlm:output"][0]["classification:classes"]
    assert [c["name"] for c in classes] == descriptor["class_names"]
    assert item["assets"]["model"]["href"] == "models:/tessera-tiny-seg/1"
    # predict on the Item: the same map as the registered version, its classes named by the Item
    for c in classes:
        c["name"] = f"item-{c['name']}"
    mine = trained / "mine_mlm.json"
    mine.write_text(json.dumps(item))
    rc, _, err = cli("predict", "--model", mine, "--input", "scene.tif", "--out", "by-item",
                     cwd=trained)  # fmt: skip
    assert rc == 0, err
    rc, _, err = cli("predict", "--model", "models:/tessera-tiny-seg/1", "--input", "scene.tif",
                     "--out", "by-uri", cwd=trained)  # fmt: skip
    assert rc == 0, err
    with rasterio.open(trained / "by-item" / "scene_classes.tif") as a:
        with rasterio.open(trained / "by-uri" / "scene_classes.tif") as b:
            np.testing.assert_array_equal(a.read(), b.read())
            assert a.tags()["class_0"] == "item-" + b.tags()["class_0"]
    # a contract the network cannot honour: one line, nothing written
    model_input["bands"] = model_input["bands"][:-1]
    mine.write_text(json.dumps(item))
    rc, _, err = cli("predict", "--model", mine, "--input", "scene.tif", "--out", "bad",
                     cwd=trained)  # fmt: skip
    assert rc == 1 and "mine_mlm.json: 3 bands, but the model reads 4" in err, err
    assert not (trained / "bad").exists()


def test_evaluation_scores_the_stitched_map_beside_the_tile_dice(trained):
    metrics = json.loads((trained / "outputs" / "eval" / "tiny-seg" / "metrics.json").read_text())
    stitched, tiles = metrics["stitched_dice_mean"], metrics["dice_mean"]
    assert stitched is not None and 0 <= stitched <= 1
    assert {"stitched_dice_class_0", "stitched_iou_mean"} <= set(metrics)
    # windows that see their neighbours' pixels lose nothing against tiles seen alone
    assert stitched >= tiles - 0.05, (stitched, tiles)


def test_the_champion_maps_a_scene_on_its_exact_grid_once_per_version(trained, cli):
    ref = "models:/tessera-tiny-seg@champion"
    rc, out, err = cli("predict", "--model", ref, "--input", "scene.tif", "--out", "maps",
                       "--probabilities", "--reconstruction", cwd=trained)  # fmt: skip
    assert rc == 0, err
    assert "predicted with tessera-tiny-seg 1: 4 maps" in out
    with rasterio.open(trained / "maps" / "scene_reconstruction.tif") as ds:
        assert ds.count == 4 and ds.dtypes[0] == "float32"  # from the registered graph
        assert 200 < float(np.nanmean(ds.read(1))) < 20000  # source units, not z-scores
    with rasterio.open(trained / "maps" / "scene_anomaly.tif") as ds:
        assert ds.count == 1 and float(np.nanmin(ds.read(1))) >= 0
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
    # its STAC Item, in the Catalog next to the maps, says what the file says
    import pystac

    assert f"STAC catalog of the maps: {trained / 'maps' / 'catalog.json'}" in out
    (item,) = pystac.Catalog.from_file(str(trained / "maps" / "catalog.json")).get_items()
    for stac_file in (trained / "maps" / "catalog.json", trained / "maps" / f"{item.id}_item.json"):
        assert stac_validator_errors(stac_file) == [], stac_file
    assert item.id == "scene" and item.properties["tessera:input_sha256"] == sha
    assert item.properties["tessera:model_version"] == "1" and item.properties["proj:code"]
    assets = {k: Path(a.get_absolute_href() or "") for k, a in item.assets.items()}
    kinds = ("classes", "probabilities", "reconstruction", "anomaly")
    assert assets == {k: trained / "maps" / f"scene_{k}.tif" for k in kinds}
    named = [c["name"] for c in item.assets["classes"].extra_fields["classification:classes"]]
    assert named[:-1] == [tags[f"class_{i}"] for i in range(len(named) - 1)]
    # the same version again: skipped, the file untouched; --force maps it again
    stamp = classes.stat().st_mtime_ns
    rc, out, _ = cli("predict", "--model", ref, "--input", "scene.tif", "--out", "maps",
                     "--probabilities", "--reconstruction", cwd=trained)  # fmt: skip
    assert rc == 0 and "0 maps, 1 scenes already mapped" in out
    assert classes.stat().st_mtime_ns == stamp
    rc, out, _ = cli("predict", "--model", ref, "--input", "scene.tif", "--out", "maps",
                     "--probabilities", "--reconstruction", "--force", cwd=trained)  # fmt: skip
    assert rc == 0 and "4 maps" in out and classes.stat().st_mtime_ns != stamp
    # a user's catalog.json where the Catalog goes: one line, before any map is written
    (trained / "theirs").mkdir()
    (trained / "theirs" / "catalog.json").write_text("{}")
    rc, _, err = cli("predict", "--model", ref, "--input", "scene.tif", "--out", "theirs",
                     cwd=trained)  # fmt: skip
    assert rc == 1 and "catalog.json: exists and is not a Tessera STAC Catalog" in err, err
    assert sorted(p.name for p in (trained / "theirs").iterdir()) == ["catalog.json"]
    # the experiment's checkpoint is the same model: the same map from the graph and the module
    rc, _, err = cli("predict", "--model", "tiny-seg", "--input", "scene.tif", "--out", "ckpt",
                     cwd=trained)  # fmt: skip
    assert rc == 0, err
    with rasterio.open(trained / "ckpt" / "scene_classes.tif") as ds:
        assert (ds.read(1) == registered).mean() > 0.999


@pytest.mark.slow
def test_a_per_window_model_maps_at_the_tile_stride_on_a_dask_cluster(trained, cli):
    import shutil

    shutil.copy(trained / "scene.tif", trained / "again.tif")
    rc, out, err = cli("predict", "--model", "tiny-ssvae", "--input", "scene.tif",
                       "--input", "again.tif", "--out", "w", "--task-runner", "dask",
                       "--set", "runner.n_workers=1", cwd=trained)  # fmt: skip
    assert rc == 0, err
    assert "2 maps" in out  # the model loaded in the worker process, not the flow's
    with rasterio.open(trained / "w" / "scene_classes.tif") as ds:
        assert ds.shape == (8, 8) and ds.tags()["cell_pixels"] == "16"  # 128 px / 16 px tiles
        first = ds.read(1)
    with rasterio.open(trained / "w" / "again_classes.tif") as ds:
        assert np.array_equal(ds.read(1), first)


def test_a_vae_maps_windows_to_its_evaluation_clusters_from_the_registry_or_checkpoint(
    trained, cli
):
    maps = []
    for ref in ("models:/tessera-tiny-vae@champion", "tiny-vae"):
        out = f"vae-{len(maps)}"
        rc, _, err = cli("predict", "--model", ref, "--input", "scene.tif", "--out", out,
                         cwd=trained)  # fmt: skip
        assert rc == 0, err
        with rasterio.open(trained / out / "scene_classes.tif") as ds:
            assert ds.shape == (8, 8) and ds.tags()["classes"] == "cluster_0,cluster_1,cluster_2"
            maps.append(ds.read(1))
    assert set(np.unique(maps[0])) <= {0, 1, 2} and len(np.unique(maps[0])) >= 2
    assert (maps[0] == maps[1]).mean() > 0.95  # the registered graph and the checkpoint agree


def test_misfits_unknown_models_and_a_down_store_are_one_line_and_write_nothing(trained, cli):
    from tessera.tasks.cluster.processes import free_port

    three = write_geotiff(trained / "three.tif", np.ones((3, 32, 32), np.uint16))
    junk = trained / "models" / "tiny-seg" / "checkpoints" / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint")
    down = f"train.tracking_uri=http://127.0.0.1:{free_port()}"
    # a version registered the old way, without tessera_model.json
    import torch
    from mlflow import MlflowClient

    from tessera.tasks.registry.mlflow_registry import LogTarget, log_candidate

    uri = f"sqlite:///{trained / 'mlflow.db'}"
    old = torch.nn.Conv2d(4, 3, 1).eval()
    example = np.zeros((2, 4, 16, 16), np.float32)
    cand = log_candidate(old, example, "tessera-old", LogTarget(uri, "old"))
    MlflowClient(uri).set_registered_model_alias("tessera-old", "champion", cand.version)
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
        (["--model", "models:/tessera-old@champion", "--input", "scene.tif"],
         "models:/tessera-old@champion: v1 has no tessera_model.json"),
    ]  # fmt: skip
    for args, words in cases:
        rc, _, err = cli("predict", *args, "--out", "refused", cwd=trained)
        assert rc == 1 and len(err.strip().splitlines()) == 1, err
        assert words in err and "Traceback" not in err, err
        assert not (trained / "refused").exists()


def test_the_pipeline_stage_maps_the_experiments_own_sources_and_summary_lists_them(trained, cli):
    rc, out, err = cli("predict", "--experiment", "tiny-seg", cwd=trained)  # predict@tiny-seg
    assert rc == 0, err
    written = trained / "outputs" / "predict" / "tiny-seg" / "scene_classes.tif"
    assert written.is_file() and f"wrote {written}" in out
    rc, out, err = cli("summary", cwd=trained)
    assert rc == 0, err
    assert "outputs/predict/tiny-seg/scene_classes.tif" in out.replace("\n", "")
    assert "ckpt-" in out


@pytest.mark.slow
@pytest.mark.long("a real Prefect server and process worker running two scheduled maps")
def test_the_scheduled_deployment_maps_new_files_once_per_version_by_a_real_worker(
    trained, tmp_path, subprocess_env
):
    """prefect.yaml's predict deployment on a real server, run twice by a real process worker:
    two new files mapped by the champion once, then skipped."""
    import shutil
    import sys

    from tests.helpers import REPO, prefect_server, run_by_worker, sh

    rng = np.random.default_rng(3)
    for name in ("a.tif", "b.tif"):
        data = rng.integers(500, 9000, (4, 40, 56)).astype(np.uint16)
        write_geotiff(trained / "incoming" / name, data, nodata=0)
    (trained / "incoming" / "notes.txt").write_text("not a scene")
    prefect = str(Path(sys.executable).parent / "prefect")
    with prefect_server(tmp_path / "home", subprocess_env) as env:
        # a checkout of the project: its prefect.yaml and the flow files it names
        shutil.copy(REPO / "prefect.yaml", trained / "prefect.yaml")
        shutil.copytree(REPO / "flows", trained / "flows", dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
        res = sh([prefect, "work-pool", "create", "tessera-process", "--type", "process"],
                 trained, env)  # fmt: skip
        assert res.returncode == 0, res.stdout + res.stderr
        # prefect.yaml's pull step runs flows in {{ $PWD }}: the folder deployed from
        res = sh([prefect, "--no-prompt", "deploy", "--name", "tessera-predict-incoming"],
                 trained, {**env, "PWD": str(trained)}, 120)  # fmt: skip
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
        params = {
            "params": {
                "root": ".",
                "folder": "incoming",
                "model": "models:/tessera-tiny-seg@champion",
                "out": "incoming-maps",
            }
        }
        deployment = "tessera-predict-folder/tessera-predict-incoming"
        run_by_worker(env, trained, deployment, params, "tessera-process")
        maps = sorted((trained / "incoming-maps").glob("*_classes.tif"))
        assert [m.name for m in maps] == ["a_classes.tif", "b_classes.tif"]
        stamps = [m.stat().st_mtime_ns for m in maps]
        with rasterio.open(maps[0]) as ds:
            assert ds.tags()["tessera_model_version"] == "1" and ds.shape == (40, 56)
        run_by_worker(env, trained, deployment, params, "tessera-process")
        assert [m.stat().st_mtime_ns for m in maps] == stamps  # done for v1: skipped


def test_a_scene_mapped_in_row_bands_gives_the_maps_of_one_piece(trained, cli, monkeypatch):
    from tessera.tasks.prediction import apply

    args = ["predict", "--model", "tiny-seg", "--input", "scene.tif", "--probabilities",
            "--reconstruction", "--overlap", "0.5"]  # fmt: skip
    assert cli(*args, "--out", "whole", cwd=trained)[0] == 0
    monkeypatch.setattr(apply, "BAND_PIXELS", 40 * 128)  # bands of 40 rows of the 128² scene
    rc, out, err = cli(*args, "--out", "bands", cwd=trained)
    assert rc == 0 and "4 maps" in out, err
    for name in ("classes", "probabilities", "reconstruction", "anomaly"):
        a, b = trained / "whole" / f"scene_{name}.tif", trained / "bands" / f"scene_{name}.tif"
        with rasterio.open(a) as x, rasterio.open(b) as y:
            assert (x.transform, x.crs, x.shape, x.count) == (y.transform, y.crs, y.shape, y.count)
            assert y.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
            np.testing.assert_array_equal(x.read(), y.read(), err_msg=name)
            np.testing.assert_array_equal(x.read_masks(), y.read_masks(), err_msg=name)
    assert not list((trained / "bands").glob(".*"))  # no piece left behind
