"""The cluster's stores: rasters read straight from S3 by tile and predict (and a store that is
down, refused in one line within a bound); DVC pushing to and pulling from S3; the registry on
the MLflow server (PostgreSQL, artifacts on S3) and its champion loaded back; PostgreSQL
restarted under a training that logs to it."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import boto3
import numpy as np
import pandas as pd
import pytest
import rasterio

from tessera.tasks.cluster.cluster import restart_postgres
from tessera.tasks.cluster.processes import free_port, stop
from tessera.tasks.cluster.s3 import BUCKETS, client_environment, start_s3
from tessera.tasks.store.reader import TileStore
from tests.cluster.conftest import client_env
from tests.cluster.projects import TESSERA, digests, ok, one_line, scene_project, tessera
from tests.helpers import TINY_EXPERIMENTS, git_dvc_repo, sh_all
from tests.prediction.stac_validation import stac_validator_errors

pytestmark = pytest.mark.cluster
BUCKET = BUCKETS[0]


def _s3(env: dict[str, str]):
    return boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_DEFAULT_REGION"],
    )


@pytest.fixture(scope="module")
def project(cluster, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scene and a tiny seg_ae trained on it here, its runs on the cluster's MLflow."""
    root = scene_project(tmp_path_factory.mktemp("storage"), {
        "seg": TINY_EXPERIMENTS["tiny-seg"], "logged": {**TINY_EXPERIMENTS["tiny-vae"],
                                                         "trainer": {"max_epochs": 30}},
    })  # fmt: skip
    env = client_env(cluster, profile=False)
    ok(tessera(["ingest"], root, env))
    ok(tessera(["tile"], root, env))
    ok(tessera(["train", "--experiment", "seg"], root, env))
    ok(tessera(["evaluate", "--experiment", "seg", "--set", "evaluate.tsne=false"], root, env))
    return root


def test_tile_and_predict_read_a_raster_straight_from_s3(project, cluster_env, tmp_path):
    key = f"data/{uuid.uuid4().hex}/scene.tif"
    _s3(cluster_env).upload_file(str(project / "scene.tif"), BUCKET, key)
    url = f"s3://{BUCKET}/{key}"
    ok(tessera(["tile", "--input", url, "--size", 16, "--out", tmp_path / "s3"], tmp_path,
               cluster_env))  # fmt: skip
    ok(tessera(["tile", "--input", project / "scene.tif", "--size", 16, "--out",
                tmp_path / "local"], tmp_path, cluster_env))  # fmt: skip
    a, b = TileStore.open(tmp_path / "s3"), TileStore.open(tmp_path / "local")
    # the parts are named after their input's identity (ETag here, sha256 there)
    pd.testing.assert_frame_equal(a.index.drop(columns="shard"), b.index.drop(columns="shard"))
    for i in range(len(a)):
        np.testing.assert_array_equal(a[i]["image"], b[i]["image"])
    scene = a.info.scenes["scene"]
    assert scene["files"] == [f"/vsis3/{BUCKET}/{key}"] and scene["sha256"][0].startswith("s3-")
    assert scene["transform"] == b.info.scenes["scene"]["transform"]
    ckpt = project / "models" / "seg" / "checkpoints" / "best.ckpt"
    for name, inp in (("s3", url), ("local", project / "scene.tif")):
        ok(tessera(["predict", "--model", ckpt, "--input", inp, "--out", tmp_path / f"p-{name}"],
                   project, cluster_env))  # fmt: skip
    maps = {}
    for name in ("s3", "local"):
        with rasterio.open(tmp_path / f"p-{name}" / "scene_classes.tif") as src:
            maps[name] = (src.read(), src.transform, src.crs)
    np.testing.assert_array_equal(maps["s3"][0], maps["local"][0])
    assert maps["s3"][1:] == maps["local"][1:]


def test_a_store_that_is_down_fails_the_read_in_one_line(project, cluster_env, tmp_path):
    port = free_port()
    moto = start_s3(tmp_path, port)
    try:
        env = {**cluster_env, **client_environment(port)}
        _s3(env).upload_file(str(project / "scene.tif"), BUCKET, "scene.tif")
    finally:  # the fault itself, and the daemon stopped by PID whatever happened
        stop(moto)
    started = time.monotonic()
    res = tessera(["tile", "--input", f"s3://{BUCKET}/scene.tif", "--out", tmp_path / "t"],
                  tmp_path, env)  # fmt: skip
    line = one_line(res)
    assert f"s3://{BUCKET}/scene.tif" in line and time.monotonic() - started < 60, line
    assert not (tmp_path / "t").exists()


def test_dvc_pushes_to_s3_and_a_fresh_clone_pulls_it_back(cluster, cluster_env, tmp_path):
    repo = git_dvc_repo(tmp_path / "repo", cluster_env)
    (repo / "data").mkdir()
    rng = np.random.default_rng(0)
    (repo / "data" / "blob.bin").write_bytes(rng.bytes(200_000))
    prefix = f"s3://{BUCKET}/dvc-{uuid.uuid4().hex}"
    endpoint = cluster_env["AWS_ENDPOINT_URL"]
    sh_all(
        [["dvc", "remote", "add", "-d", "s3", prefix],
         ["dvc", "remote", "modify", "s3", "endpointurl", endpoint],
         ["dvc", "add", "-q", "data"], ["git", "add", "-A"], ["git", "commit", "-qm", "data"],
         ["dvc", "push", "-q"]],
        repo, cluster_env,
    )  # fmt: skip
    clone = tmp_path / "clone"
    sh_all([["git", "clone", "-q", str(repo), str(clone)]], tmp_path, cluster_env)
    sh_all([["dvc", "pull", "-q"]], clone, cluster_env)
    assert digests(clone / "data") == digests(repo / "data")


def test_a_push_to_a_store_that_is_down_fails_within_a_bound(cluster_env, tmp_path):
    from tessera.tasks.pipeline.dvc_stages import push_outputs

    port = free_port()
    moto = start_s3(tmp_path, port)
    try:
        env = {**cluster_env, **client_environment(port)}
        repo = git_dvc_repo(tmp_path / "repo", env)
        (repo / "data").mkdir()
        (repo / "data" / "x.txt").write_text("x")
        sh_all([["dvc", "remote", "add", "-d", "s3", f"s3://{BUCKET}/dvc"],
                ["dvc", "remote", "modify", "s3", "endpointurl", env["AWS_ENDPOINT_URL"]],
                ["dvc", "add", "-q", "data"]], repo, env)  # fmt: skip
    finally:  # the fault itself, and the daemon stopped by PID whatever happened
        stop(moto)
    code = (
        "import sys, time; from pathlib import Path; "
        "from tessera.tasks.pipeline.dvc_stages import push_outputs\n"
        "t = time.monotonic()\ntry:\n    push_outputs(Path(sys.argv[1]))\n"
        "except Exception as e:\n    print(round(time.monotonic() - t, 1), type(e).__name__)"
    )
    res = subprocess.run([sys.executable, "-c", code, str(repo)], env=env, capture_output=True,
                         text=True, timeout=300)  # fmt: skip
    took, _, kind = res.stdout.strip().partition(" ")
    assert kind and float(took) < 60, (res.stdout, res.stderr[-2000:])
    assert push_outputs  # the function the pipeline's push step runs


def test_register_and_load_the_champion_through_mlflow_on_postgres_and_s3(
    cluster, project, cluster_env
):
    name = f"tessera-seg-{uuid.uuid4().hex[:8]}"
    out = ok(tessera(["register", "--experiment", "seg", "--set",
                      f"experiments.seg.registry.name={name}"], project, cluster_env))  # fmt: skip
    assert f"registered {name} v1 as champion" in out
    code = (
        "import mlflow.pytorch, torch; "
        f"m = mlflow.pytorch.load_model('models:/{name}@champion'); "
        "print(tuple(m(torch.zeros(2, 4, 16, 16)).shape))"
    )
    env = {"PATH": cluster_env["PATH"], "MLFLOW_TRACKING_URI": cluster.env["MLFLOW_TRACKING_URI"],
           "HOME": str(project)}  # fmt: skip
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=180)  # fmt: skip
    assert res.returncode == 0 and res.stdout.strip().endswith("(2, 3, 16, 16)"), res.stderr[-2000:]
    keys = [o["Key"] for o in _s3(cluster_env).list_objects_v2(Bucket=BUCKET, Prefix="mlflow/")
            .get("Contents", [])]  # fmt: skip
    assert any(k.endswith("MLmodel") for k in keys)  # the server put the artifacts in S3
    # the champion maps a STAC Item on S3 whose asset is on S3: the COG, its Item, the Catalog
    key = f"stac/{uuid.uuid4().hex}"
    _s3(cluster_env).upload_file(str(project / "scene.tif"), BUCKET, f"{key}/scene.tif")
    item = {
        "type": "Feature", "stac_version": "1.1.0", "id": "scene-on-s3", "geometry": None,
        "properties": {"datetime": "2026-01-01T00:00:00Z"}, "links": [],
        "assets": {"image": {"href": f"s3://{BUCKET}/{key}/scene.tif", "roles": ["data"],
                             "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                             "bands": [{"name": f"b{i}"} for i in range(1, 5)]}},
    }  # fmt: skip
    _s3(cluster_env).put_object(Bucket=BUCKET, Key=f"{key}/item.json", Body=json.dumps(item))
    ok(tessera(["predict", "--model", f"models:/{name}@champion", "--input",
                f"s3://{BUCKET}/{key}/item.json", "--out", "stac-maps"], project,
               cluster_env))  # fmt: skip
    ckpt = project / "models" / "seg" / "checkpoints" / "best.ckpt"
    ok(tessera(["predict", "--model", ckpt, "--input", project / "scene.tif", "--out",
                "local-maps"], project, cluster_env))  # fmt: skip
    with rasterio.open(project / "stac-maps" / "scene-on-s3_classes.tif") as a:
        with rasterio.open(project / "local-maps" / "scene_classes.tif") as b:
            np.testing.assert_array_equal(a.read(), b.read())
            assert a.transform == b.transform and a.crs == b.crs
    for stac_file in ("scene-on-s3_item.json", "catalog.json"):
        assert stac_validator_errors(project / "stac-maps" / stac_file) == [], stac_file


@pytest.mark.slow
def test_postgres_restarted_under_a_training_loses_nothing(cluster, project, cluster_env):
    from mlflow import MlflowClient

    env = client_env(cluster, profile=False)  # trained here, logged to the cluster's MLflow
    proc = subprocess.Popen([TESSERA, "train", "--experiment", "logged"], cwd=project, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    time.sleep(8)
    assert proc.poll() is None, "training finished before PostgreSQL could be restarted"
    restart_postgres(Path(cluster.folder))
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    run = json.loads((project / "models" / "logged" / "train_run.json").read_text())
    client = MlflowClient(cluster.env["MLFLOW_TRACKING_URI"])
    assert len(client.get_metric_history(run["mlflow_run_id"], "val_loss")) == 30
