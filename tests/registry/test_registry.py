"""The promotion gate on a real sqlite registry; the CLI against a real ``mlflow server``."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tessera.flows.local_server.api import healthy
from tessera.models.nets.vae_nets import TileClassifier
from tessera.models.serving import ClassifierServing
from tessera.tasks.cluster.processes import free_port
from tessera.tasks.registry.gate import Bar, GateRule, gate
from tessera.tasks.registry.mlflow_registry import (
    CandidateFiles,
    LogTarget,
    RegistryError,
    ServingCheck,
    log_candidate,
    promote,
)
from tests.helpers import stop_process_group


@pytest.mark.parametrize(
    ("candidate", "champion", "direction", "min_imp", "alias", "words"),
    [
        (0.8, None, "max", 0.01, "champion", "first model"),
        (0.85, 0.80, "max", 0.01, "champion", "0.05 higher"),
        (0.805, 0.80, "max", 0.01, "challenger", "needs higher by at least 0.01"),
        (0.70, 0.80, "max", 0.0, "challenger", "needs higher"),
        (0.80, 0.80, "max", 0.0, "challenger", "gain 0"),
        (0.10, 0.20, "min", 0.05, "champion", "lower"),
        (float("nan"), 0.20, "max", 0.0, "challenger", "candidate has no"),
        (0.10, float("nan"), "max", 0.0, "champion", "champion v1 has no m"),
    ],
)
def test_gate_decisions(candidate, champion, direction, min_imp, alias, words):
    d = gate("m", candidate, champion, direction, min_imp, None if champion is None else "1")
    assert d.alias == alias and words in d.reason


@pytest.mark.parametrize(
    ("candidate", "direction", "alias", "words"),
    [
        (0.7, "max", "challenger", "does not beat its baseline (per-pixel random forest) 0.98"),
        (0.98, "max", "challenger", "require_beats_baseline"),  # equal is not better
        (0.99, "max", "champion", "first model"),
        (0.1, "min", "champion", "first model"),
    ],
)
def test_gate_holds_back_a_model_that_loses_to_its_baseline(candidate, direction, alias, words):
    bar = Bar("per-pixel random forest", 0.98 if direction == "max" else 0.2)
    d = gate("dice_mean", candidate, None, direction, 0.0, None, bar)
    assert d.alias == alias and words in d.reason


def _model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return ClassifierServing(TileClassifier(2, 3, [4], "batch", "relu", 0.0)).eval()


def _register(model, example, uri, art, value, metric="accuracy", metrics=None):
    files = CandidateFiles(metrics=metrics or {}, tags={"a": "b"})
    cand = log_candidate(model, example, "tessera-toy", LogTarget(uri, "toy", None, art), files)
    with torch.no_grad():
        expected = model(torch.from_numpy(example)).numpy()
    rule = GateRule(metric, "max", 0.01)
    return cand, lambda: promote(cand, uri, ServingCheck(example, expected), value, rule)


def _aliases(client) -> dict[str, str]:
    return {k: str(v) for k, v in client.get_registered_model("tessera-toy").aliases.items()}


def test_gate_on_a_real_sqlite_registry(tmp_path):
    from mlflow import MlflowClient

    uri, art = f"sqlite:///{tmp_path / 'mlflow.db'}", str(tmp_path / "artifacts")
    client = MlflowClient(uri)
    example = np.random.default_rng(0).normal(size=(3, 2, 8, 8)).astype(np.float32)
    # first model: champion
    _, go = _register(_model(1), example, uri, art, 0.80)
    assert go().alias == "champion" and _aliases(client) == {"champion": "1"}
    assert client.get_model_version("tessera-toy", "1").tags["a"] == "b"
    # better by more than min_improvement: champion moves
    _, go = _register(_model(2), example, uri, art, 0.90)
    d = go()
    assert d.alias == "champion" and d.champion_version == "1"
    assert _aliases(client) == {"champion": "2"}
    # worse: challenger, the champion stays
    _, go = _register(_model(3), example, uri, art, 0.85)
    d = go()
    assert d.alias == "challenger" and "needs higher" in d.reason
    assert _aliases(client) == {"champion": "2", "challenger": "3"}
    gate_tag = client.get_model_version("tessera-toy", "3").tags["tessera.gate"]
    assert gate_tag == d.reason
    # a better model whose stored copy cannot load: error, every alias where it was
    c4, go = _register(_model(4), example, uri, art, 0.99)
    weights = [p for p in Path(art).rglob("*") if p.is_file() and p.suffix in (".pt2", ".pth")]
    newest = max(weights, key=lambda p: p.stat().st_mtime)
    newest.write_bytes(b"truncated")
    with pytest.raises(RegistryError, match="does not load and run"):
        go()
    assert _aliases(client) == {"champion": "2", "challenger": "3"}
    tags = client.get_model_version("tessera-toy", c4.version).tags
    assert tags["tessera.validation"].startswith("failed")
    # the gate's metric changes: the champion's value comes from its run's eval_<metric>
    _, go = _register(_model(5), example, uri, art, 0.95, metrics={"accuracy": 0.95, "f1": 0.6})
    assert go().alias == "champion" and _aliases(client)["champion"] == "5"
    _, go = _register(_model(6), example, uri, art, 0.55, "f1")
    d = go()
    assert d.alias == "challenger" and "f1 0.55 vs champion v5 0.6" in d.reason
    # ... and a champion that never measured the new metric cannot block it
    _, go = _register(_model(7), example, uri, art, 0.1, "recall")
    d = go()
    assert d.alias == "champion" and "champion v5 has no recall" in d.reason


@pytest.mark.slow
@pytest.mark.long("a training, then a real MLflow server started, killed and left down")
def test_register_against_a_real_mlflow_server(tmp_path, cli, subprocess_env):
    """Register while the server is still starting (retries with backoff), load the champion
    from it in a new process; the server dying during a registration moves no alias; then a
    server that stays down fails in one line."""
    from tests.helpers import TINY_EXPERIMENTS, training_dir

    root = training_dir(tmp_path / "repo", {"tiny-ssvae": TINY_EXPERIMENTS["tiny-ssvae"]})
    assert cli("train", "--experiment", "tiny-ssvae", cwd=root)[0] == 0
    assert cli("evaluate", "--experiment", "tiny-ssvae", cwd=root)[0] == 0
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [
        str(Path(sys.executable).parent / "mlflow"), "server",
        "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
        "--artifacts-destination", str(tmp_path / "server-artifacts"),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    server = subprocess.Popen(
        cmd, env=subprocess_env, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert not healthy(url)  # still starting: the first requests must be retried
        rc, out, err = cli(
            "register", "--experiment", "tiny-ssvae",
            "--set", f"train.tracking_uri={url}",
            "--set", "registry.retries=7", "--set", "registry.backoff_s=1",
            cwd=root,
        )  # fmt: skip
        assert rc == 0, err
        assert "registered tessera-tiny-ssvae v1 as champion" in out
        # the server is not left in this process's environment for later runs to inherit
        assert os.environ.get("MLFLOW_TRACKING_URI") != url
        code = (
            "import mlflow.pytorch, torch; "
            "m = mlflow.pytorch.load_model('models:/tessera-tiny-ssvae@champion'); "
            "print(tuple(m(torch.zeros(2, 4, 16, 16)).shape))"
        )
        env = {**subprocess_env, "MLFLOW_TRACKING_URI": url}
        res = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
        )
        assert res.returncode == 0 and res.stdout.strip() == "(2, 3)", res.stderr[-2000:]
        assert list((tmp_path / "server-artifacts").rglob("MLmodel"))  # proxied artifacts

        # a new evaluation is being registered when the server dies: no alias moves
        assert cli("evaluate", "--experiment", "tiny-ssvae", "--set", "evaluate.seed=1",
                   cwd=root)[0] == 0  # fmt: skip
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "tessera"), "register", "--experiment",
             "tiny-ssvae", "--set", f"train.tracking_uri={url}", "--set", "registry.retries=0"],
            cwd=root, env=subprocess_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if len(list((tmp_path / "server-artifacts").rglob("MLmodel"))) >= 2:
                break  # the new model is uploaded: registration and the gate come next
            time.sleep(0.02)
        assert proc.poll() is None, "registration finished before the server could be stopped"
    finally:
        stop_process_group(server)
    _, err = proc.communicate(timeout=120)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert proc.returncode == 1 and len(lines) == 1 and lines[0].startswith("tessera: "), err
    from mlflow import MlflowClient

    store = MlflowClient(f"sqlite:///{tmp_path / 'server.db'}")
    assert store.get_registered_model("tessera-tiny-ssvae").aliases == {"champion": 1}
    deadline = time.monotonic() + 10
    while healthy(url) and time.monotonic() < deadline:
        time.sleep(0.5)
    rc, _, err = cli(
        "register", "--experiment", "tiny-ssvae",
        "--set", f"train.tracking_uri={url}", "--set", "registry.retries=1",
        "--set", "registry.backoff_s=0",
        cwd=root,
    )  # fmt: skip
    assert rc == 1 and len(err.strip().splitlines()) == 1
    assert f"{url}: tracking store unreachable" in err
