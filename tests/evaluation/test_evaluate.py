"""``tessera evaluate`` and ``tessera register`` end to end on tiny trained models."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio

from tests.helpers import TINY_EXPERIMENTS as EXPERIMENTS
from tests.helpers import relocated

CLASSES = ["class_0", "class_1", "class_2"]


@pytest.fixture(scope="module")
def trained(tiny_trained, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny experiments, each trained for 2 epochs: a copy of the session's."""
    return relocated(tiny_trained.root, tmp_path_factory.mktemp("evaluate") / "project")


def kind_of(name: str) -> str:
    return str(EXPERIMENTS[name]["model"]["type"])


def _eval(root: Path, name: str) -> Path:
    return root / "outputs" / "eval" / name


def _metrics(root: Path, name: str) -> dict:
    return json.loads((_eval(root, name) / "metrics.json").read_text())


@pytest.mark.long("its first case sets up tiny_trained: every tiny experiment trained once")
@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_evaluate_writes_metrics_plots_maps_and_report(trained, cli, name):
    rc, out, err = cli("evaluate", "--experiment", name, cwd=trained)
    assert rc == 0, err
    assert f"evaluated {name}:" in out
    folder = _eval(trained, name)
    m = _metrics(trained, name)
    # every group the model supports, over the test split's valid pixels
    assert m["n_tiles"] >= 3 and m["k"] == 3  # k defaults to the number of classes
    assert m["rec_mse"] > 0 and math.isfinite(m["rec_psnr"]) and -1 <= m["rec_ssim"] <= 1
    for key in ("silhouette", "davies_bouldin", "calinski_harabasz", "nmi", "ari"):
        assert m[key] is not None and m[f"gmm_{key}"] is not None
    assert 1 / 3 <= m["cluster_accuracy"] <= 1  # Hungarian matching never does worse than 1/k
    assert {f"silhouette_k{k}" for k in range(2, 9)} <= set(m) or m["n_tiles"] <= 8
    assert 0 <= m["linear_probe_accuracy"] <= 1
    assert 0 <= m["retrieval_top1"] <= 1 and m["info_nce"] > 0
    assert m["active_units"] <= m["latent_dim"]
    # beside the model: what a user would pick instead, on the same split
    assert (
        0 <= m["baseline_kmeans_raw_nmi"] <= 1 and m["baseline_nmi"] >= m["baseline_kmeans_raw_nmi"]
    )
    clusters = json.loads((folder / "clusters.json").read_text())  # kept for new scenes
    assert clusters["k"] == 3 and len(clusters["centroids"]) == 3
    assert len(clusters["centroids"][0]) == m["latent_dim"] or kind_of(name) == "seg_ae"
    plots = {p.name for p in (folder / "plots").iterdir()}
    assert {"reconstructions.png", "embedding.png", "loss_curve.png"} <= plots
    assert {"silhouette_sweep.csv", "embedding.csv", "loss_curve.csv"} <= plots
    kind = EXPERIMENTS[name]["model"]["type"]
    if kind == "seg_ae":
        assert 0 <= m["dice_mean"] <= 1 and 0 <= m["iou_mean"] <= 1
        assert all(f"dice_{c}" in m for c in CLASSES)  # per class, by name
        assert "segmentation.png" in plots
        assert 0.5 < m["baseline_rf_dice_mean"] <= 1  # bands separate the classes
        assert all(f"baseline_rf_dice_{c}" in m for c in CLASSES)
        summary = json.loads((trained / "models" / name / "train_summary.json").read_text())
        assert m["compression_ratio"] == pytest.approx(summary["compression_ratio"])
    else:
        assert m["kl_total"] > 0 and "kl_per_dim.png" in plots
    if kind == "ssvae":
        assert 0 <= m["accuracy"] <= 1 and 0 <= m["macro_f1"] <= 1
        assert {"confusion.png", "confusion.csv"} <= plots
        assert m["baseline_majority_accuracy"] == m["majority_accuracy"]
        assert 0 <= m["baseline_labels_only_accuracy"] <= 1
        assert m["baseline_accuracy"] >= m["baseline_majority_accuracy"]
    if kind in ("ssvae", "cvae"):
        assert "samples.png" in plots
    # the sweep table behind the plot
    rows = (folder / "plots" / "silhouette_sweep.csv").read_text().splitlines()
    assert rows[0] == "k,silhouette" and len(rows) >= 3
    # cluster map: every tile's cluster on the source's grid, CRS and bounds
    with (
        rasterio.open(trained / "scene.tif") as src,
        rasterio.open(folder / "maps" / "scene_clusters.tif") as cmap,
    ):
        assert cmap.crs == src.crs and tuple(cmap.bounds) == tuple(src.bounds)
        grid = cmap.read(1)
    assert grid.shape == (8, 8) and set(np.unique(grid)) <= {-1, 0, 1, 2}
    assert (grid >= 0).sum() == 64  # all splits painted
    report = (folder / "report.md").read_text()
    assert "| silhouette |" in report and "## Model versus baseline" in report
    assert "k-means on raw pixels" in report
    for link in report.split("](")[1:]:
        assert (folder / link.split(")")[0]).exists()
    assert not list(folder.parent.glob(".*tmp"))


def test_evaluate_artifact_reaches_prefect(trained, cli):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    rc, _, err = cli("evaluate", "--experiment", "tiny-vae", cwd=trained)
    assert rc == 0, err
    with get_client(sync_client=True) as client:
        key = ArtifactFilterKey(any_=["tessera-eval-tiny-vae"])
        found = client.read_artifacts(artifact_filter=ArtifactFilter(key=key))
    assert found and "| silhouette |" in str(found[0].data)


def test_evaluate_bad_checkpoint_is_one_line(trained, cli, tmp_path):
    rc, _, err = cli(
        "evaluate", "--experiment", "tiny-vae", "--checkpoint", "nope.ckpt", cwd=trained
    )
    assert (
        rc == 1 and err.strip() == "tessera: nope.ckpt: no checkpoint (run `tessera train` first)"
    )
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint at all")
    rc, _, err = cli("evaluate", "--experiment", "tiny-vae", "--checkpoint", junk, cwd=trained)
    assert rc == 1 and len(err.strip().splitlines()) == 1
    assert str(junk) in err and "Traceback" not in err


def test_register_gates_tags_and_loads_in_a_new_process(trained, cli, subprocess_env):
    from mlflow import MlflowClient

    for name in EXPERIMENTS:
        if not (_eval(trained, name) / "metrics.json").exists():
            assert cli("evaluate", "--experiment", name, cwd=trained)[0] == 0
    rc, out, err = cli("register", cwd=trained)
    assert rc == 0, err
    assert out.count("as champion") == 4 and "first model" in out
    uri = f"sqlite:///{trained / 'mlflow.db'}"
    client = MlflowClient(uri)
    mv = client.get_model_version_by_alias("tessera-tiny-ssvae", "champion")
    for tag in (
        "git_sha", "git_dirty", "data_md5", "dvc_lock_md5", "prefect_flow_run_id",
        "params_sha256", "tile_store_version",
    ):  # fmt: skip
        assert mv.tags[tag], tag
    assert mv.tags["tessera.validation"] == "passed"
    # what prediction needs travels inside the model, its digest as a tag
    from mlflow.artifacts import download_artifacts

    from tessera.models.descriptor import DESCRIPTOR_FILE, DIGEST_TAG, ModelDescriptor

    local = Path(download_artifacts(f"models:/tessera-tiny-ssvae/{mv.version}", tracking_uri=uri))
    (card,) = local.rglob(DESCRIPTOR_FILE)
    descriptor = ModelDescriptor.parse(card.read_bytes(), str(card))
    assert descriptor.digest() == mv.tags[DIGEST_TAG]
    assert descriptor.model_type == "ssvae" and descriptor.output == "class_probabilities"
    assert len(descriptor.bands) == 4 and descriptor.window == 16
    assert float(mv.tags["tessera.primary_value"]) == _metrics(trained, "tiny-ssvae")["accuracy"]
    record = json.loads((trained / "outputs" / "registry" / "tiny-ssvae.json").read_text())
    assert record["logged_to_training_run"] and record["alias"] == "champion"
    run = client.get_run(record["run_id"])
    assert "eval_accuracy" in run.data.metrics  # evaluation logged to the training's run
    arts = {a.path for a in client.list_artifacts(record["run_id"], "eval")}
    assert "eval/metrics.json" in arts and "eval/plots" in arts
    # the same model and evaluation again: nothing new is registered, the champion stays
    rc, out, err = cli("register", "--experiment", "tiny-ssvae", cwd=trained)
    assert rc == 0, err
    assert "unchanged tessera-tiny-ssvae v1 as champion" in out
    assert len(client.search_model_versions("name = 'tessera-tiny-ssvae'")) == 1
    assert str(client.get_model_version_by_alias("tessera-tiny-ssvae", "champion").version) == "1"
    code = (
        "import mlflow.pytorch, torch; "
        "m = mlflow.pytorch.load_model('models:/tessera-tiny-ssvae@champion'); "
        "p = m(torch.zeros(5, 4, 16, 16)); print(tuple(p.shape), float(p.sum()))"
    )
    env = {**subprocess_env, "MLFLOW_TRACKING_URI": uri}
    res = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
        cwd=trained.parent,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    shape, total = res.stdout.strip().rsplit(" ", 1)
    assert shape == "(5, 3)" and float(total) == pytest.approx(5.0, abs=1e-4)  # probabilities
