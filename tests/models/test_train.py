"""``tessera train`` end to end: every model type, MLflow logging, --resume and 2-process DDP."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from tests.helpers import TINY_EXPERIMENTS as EXPERIMENTS
from tests.helpers import training_dir


@pytest.fixture(scope="module")
def train_dir(prefect_api: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A labelled 4-band scene tiled into 16-px tiles, and a params.yaml with tiny experiments,
    untracked: MLflow's logging is tested on the session's trainings and ``fresh_dir``'s."""
    return training_dir(tmp_path_factory.mktemp("train"), EXPERIMENTS, tracking=False)


def _summary(root: Path, name: str, models: str = "models") -> dict:
    return json.loads((root / models / name / "train_summary.json").read_text())


def default_run(tiny_trained, name: str) -> tuple[Path, tuple[int, str, str]]:
    """The session's training of experiment ``name`` with its defaults (conftest's
    ``tiny_trained``, shared read-only with the evaluate and predict tests): its project and
    (rc, stdout, stderr)."""
    return tiny_trained.root, tiny_trained.runs[name]


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_every_model_type_trains_from_the_cli(tiny_trained, name):
    root, (rc, out, err) = default_run(tiny_trained, name)
    assert rc == 0, err
    assert f"trained {name}: world size 1, 2 epochs" in out
    s = _summary(root, name)
    assert s["world_size"] == 1 and s["epochs"] == 2 and s["steps"] > 0
    assert s["model_type"] == EXPERIMENTS[name]["model"]["type"]
    assert math.isfinite(s["best_val_loss"])
    folder = root / "models" / name
    assert (folder / s["best_checkpoint"]).exists()
    assert (folder / "checkpoints" / "last.ckpt").exists()
    assert (folder / "plots" / "loss_curve.png").stat().st_size > 1000
    ckpt = torch.load(folder / s["best_checkpoint"], weights_only=True)
    assert ckpt["hyper_parameters"]["in_channels"] == 4
    last = torch.load(folder / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["epoch"] == 1 and last["global_step"] >= s["steps"]  # the final epoch
    if name == "tiny-seg":
        assert 0.0 <= s["test_metrics"]["test_dice"] <= 1.0
        assert s["capacity_mode"] == "undercomplete"
    if name == "tiny-ssvae":
        assert 0.0 <= s["test_metrics"]["test_accuracy"] <= 1.0
    if name in ("tiny-vae", "tiny-cvae"):
        assert "val_active_units" in s["final_metrics"]


def test_mlflow_gets_params_epoch_metrics_and_plots(tiny_trained):
    from mlflow.tracking import MlflowClient

    root, (rc, _, err) = default_run(tiny_trained, "tiny-seg")
    assert rc == 0, err
    s = _summary(root, "tiny-seg")
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    assert "mlflow_run_id" not in s and "wall_time_s" not in s  # the same on every machine
    this_run = json.loads((root / "models" / "tiny-seg" / "train_run.json").read_text())
    run = client.get_run(this_run["mlflow_run_id"])
    assert run.data.params["latent_channels"] == "8"
    assert len(client.get_metric_history(run.info.run_id, "val_loss")) == s["epochs"] == 2
    assert "test_dice" in run.data.metrics
    arts = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert "plots/loss_curve.png" in arts


def test_resume_continues_from_the_last_checkpoint(train_dir, cli):
    rc, _, err = cli(
        "train", "--experiment", "tiny-vae", "--set", "train.trainer.max_epochs=1", cwd=train_dir
    )
    assert rc == 0, err
    first = _summary(train_dir, "tiny-vae")
    assert first["epochs"] == 1
    rc, _, err = cli(
        "train",
        "--experiment",
        "tiny-vae",
        "--resume",
        "--set",
        "train.trainer.max_epochs=3",
        cwd=train_dir,
    )
    assert rc == 0, err
    resumed = _summary(train_dir, "tiny-vae")
    assert resumed["epochs"] == 3
    assert resumed["steps"] == 3 * first["steps"]  # two more epochs, not three from scratch
    # the project trains untracked (train.tracking_uri ""): no MLflow store, no run
    run = json.loads((train_dir / "models" / "tiny-vae" / "train_run.json").read_text())
    assert run["mlflow_run_id"] is None and not (train_dir / "mlflow.db").exists()


def test_resume_without_a_checkpoint_and_unknown_experiments_fail_in_one_line(train_dir, cli):
    rc, _, err = cli(
        "train",
        "--experiment",
        "tiny-cvae",
        "--resume",
        "--set",
        "train.out=elsewhere",
        cwd=train_dir,
    )
    assert rc == 1
    rc, _, err = cli("train", "--experiment", "nope", cwd=train_dir)
    assert rc == 1 and "unknown experiment 'nope'" in err and len(err.splitlines()) == 1
    rc, _, err = cli(
        "train",
        "--experiment",
        "tiny-seg",
        "--set",
        "experiments.tiny-seg.model.conv=fancy",
        cwd=train_dir,
    )
    assert rc == 1 and "conv" in err and "Traceback" not in err


@pytest.mark.slow
@pytest.mark.parametrize("reg", ["dec", "vade"])
def test_ddp_trains_the_clustering_priors_seeded_after_warmup(train_dir, cli, reg):
    """Under DDP the DEC centroids and the VaDE mixture take no gradient until they are seeded
    (after one epoch here); both ranks still train, and every rank holds rank 0's seeding."""
    model = "experiments.tiny-vae.model"
    rc, _, err = cli(
        "train", "--experiment", "tiny-vae", "--devices", "2",
        "--set", f"{model}.cluster_reg={reg}", "--set", f"{model}.n_clusters=2",
        "--set", f"{model}.cluster_warmup_epochs=1", "--set", f"{model}.cluster_weight=1.0",
        cwd=train_dir,
    )  # fmt: skip
    assert rc == 0, err
    s = _summary(train_dir, "tiny-vae")
    assert s["world_size"] == 2 and s["epochs"] == 2
    last = torch.load(train_dir / "models/tiny-vae/checkpoints/last.ckpt", weights_only=True)
    state = last["state_dict"]
    assert bool(state["dec_ready"])
    prior = state["centroids"] if reg == "dec" else state["mixture.means"]
    assert torch.isfinite(prior).all() and prior.abs().sum() > 0


@pytest.fixture(scope="module")
def fresh_dir(prefect_api: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project as a fresh clone has it: no MLflow store yet, the default tracking URI."""
    import yaml

    root = training_dir(
        tmp_path_factory.mktemp("fresh"),
        {
            "tiny-seg": EXPERIMENTS["tiny-seg"],
            "bad": {**EXPERIMENTS["tiny-seg"], "dataset": {"sources": ["nope"]}},
        },
    )
    params = yaml.safe_load((root / "params.yaml").read_text())
    del params["train"]["tracking_uri"]  # sqlite:///mlflow.db in the project, created on first use
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return root


@pytest.mark.slow
def test_ddp_with_two_processes_on_gloo_and_a_fresh_store(fresh_dir, cli):
    """Each rank reads its own half of the tiles; the two ranks never race to create the
    MLflow store (it is created before they start)."""
    from mlflow import MlflowClient

    assert not (fresh_dir / "mlflow.db").exists()
    rc, out, err = cli("train", "--experiment", "tiny-seg", "--devices", "2", cwd=fresh_dir)
    assert rc == 0, err
    assert "world size 2" in out and "Traceback" not in err
    s = _summary(fresh_dir, "tiny-seg")
    assert s["world_size"] == 2
    per_rank_batches = math.ceil(math.ceil(s["data"]["n_train"] / 2) / 8)
    assert s["steps"] == 2 * per_rank_batches  # each rank reads its own half per epoch
    runs = MlflowClient(f"sqlite:///{fresh_dir / 'mlflow.db'}").search_runs(
        [
            MlflowClient(f"sqlite:///{fresh_dir / 'mlflow.db'}")
            .get_experiment_by_name("tiny-seg")
            .experiment_id
        ]
    )
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"


@pytest.mark.slow
def test_a_failing_rank_gives_one_line_not_torchruns_traceback(fresh_dir, subprocess_env):
    import subprocess
    import sys

    res = subprocess.run(
        [str(Path(sys.executable).parent / "tessera"), "train", "--experiment", "bad",
         "--devices", "2"],
        cwd=fresh_dir, env=subprocess_env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert res.returncode == 1
    assert "Traceback" not in res.stderr and "ChildFailedError" not in res.stderr, res.stderr
    mine = [ln for ln in res.stderr.splitlines() if ln.startswith("tessera:")]
    assert len(mine) == 1 and "nope" in mine[0], res.stderr


def test_cosine_schedule_anneals_and_early_stopping_stops(train_dir, cli):
    sets = ["--set", "experiments.tiny-seg.model.lr_schedule=cosine"]
    rc, _, err = cli("train", "--experiment", "tiny-seg", *sets, cwd=train_dir)
    assert rc == 0, err
    last = torch.load(train_dir / "models" / "tiny-seg" / "checkpoints" / "last.ckpt",
                      weights_only=True)  # fmt: skip
    (sched,) = last["lr_schedulers"]
    assert sched["last_epoch"] == last["global_step"] and sched["_last_lr"][0] < 1e-6
    # val_reg is 0 at every validation (no latent penalty): it never improves, so training
    # stops after the first validation plus a patience of one
    sets = ["--set", "train.trainer.max_epochs=6", "--set", "train.trainer.monitor=val_reg",
            "--set", "train.trainer.early_stopping_patience=1"]  # fmt: skip
    rc, _, err = cli("train", "--experiment", "tiny-seg", *sets, cwd=train_dir)
    assert rc == 0, err
    assert _summary(train_dir, "tiny-seg")["epochs"] == 2


@pytest.mark.parametrize("name", ["tiny-seg", "tiny-vae"])
def test_a_gradient_norm_bound_limits_every_update(train_dir, tiny_trained, cli, name):
    """A vanishing gradient-norm bound leaves the weights where they started (Adam's ε then
    dominates each step), under Lightning's automatic optimisation (seg_ae) and under the
    VAE's own optimiser steps; without it they move."""
    import lightning.pytorch as pl

    from tessera.models.run.fit import build
    from tessera.models.run.run_config import RunConfig

    moved = {}
    for bound in ("null", "1e-12"):  # null: the default run (no bound)
        if bound == "null":
            root, (rc, _, err) = default_run(tiny_trained, name)
            folder = root / "models" / name
        else:
            out = f"models-clip-{bound}"
            rc, _, err = cli("train", "--experiment", name, "--set", f"train.out={out}",
                             "--set", f"train.trainer.gradient_clip_val={bound}",
                             cwd=train_dir)  # fmt: skip
            folder = train_dir / out / name
        assert rc == 0, err
        config = RunConfig.model_validate_json((folder / "run_config.json").read_text())
        pl.seed_everything(config.trainer.seed, workers=True, verbose=False)
        _, module = build(config)  # the weights the training started from
        last = torch.load(folder / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
        moved[bound] = max(
            (last[key] - value.detach()).abs().max().item()
            for key, value in module.named_parameters()
        )
    assert moved["null"] > 1e-3, moved
    assert moved["1e-12"] < 1e-5, moved
