"""The MLflow calls of the registry: log a model, tag its lineage, promote it by alias.

Aliases only (registry stages are deprecated): ``champion`` moves to a candidate that beats
it by ``min_improvement`` on the experiment's primary metric, or when there is none; otherwise
the candidate becomes ``challenger``. Before any alias moves, the version must be READY, load
back from ``models:/<name>/<version>`` and reproduce its outputs on stored tiles; any failure
leaves every alias where it was.
"""

from __future__ import annotations

import io
import math
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tessera.tasks.registry.gate import CHAMPION, Bar, GateDecision, GateRule, gate
from tessera.tasks.registry.http_retries import http_retry_environment

PRIMARY_METRIC_TAG, PRIMARY_VALUE_TAG = "tessera.primary_metric", "tessera.primary_value"
FINGERPRINT_TAG = "tessera.fingerprint"
PIP_REQUIREMENTS = ["torch==2.13.0", "numpy"]


class RegistryError(Exception):
    """A registration or promotion that could not be completed (aliases untouched)."""

    one_line = True


def configure_http_retries(retries: int, backoff_s: int, timeout_s: int = 10) -> None:
    """Set :func:`http_retry_environment` in this process, where MLflow reads it per call."""
    os.environ.update(http_retry_environment(retries, backoff_s, timeout_s))


def check_tracking(uri: str) -> None:
    """Fail in one line when the tracking store cannot be reached (after MLflow's retries)."""
    from mlflow import MlflowClient

    try:
        MlflowClient(uri).search_experiments(max_results=1)
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise RegistryError(f"{uri}: tracking store unreachable: {first[:300]}") from None


@contextmanager
def using_tracking(uri: str) -> Iterator[None]:
    """MLflow's fluent API pointed at ``uri`` for the block only.

    ``mlflow.set_tracking_uri`` and ``set_experiment`` also set ``MLFLOW_TRACKING_URI`` and
    ``MLFLOW_EXPERIMENT_ID`` in the environment, which every later run of this process, and
    every training it launches, would then inherit: both are put back afterwards.
    """
    import mlflow

    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID")}
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(saved["MLFLOW_TRACKING_URI"])  # type: ignore[arg-type]  # None: unset
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@dataclass
class Candidate:
    """A logged, registered model version waiting for the gate."""

    name: str
    version: str
    model_uri: str
    run_id: str


@dataclass(frozen=True)
class LogTarget:
    """Where a candidate is logged: the tracking store and experiment; the training's run,
    used when this store has it (else a new run of the experiment); the artifact location
    of an experiment created here."""

    tracking_uri: str
    experiment: str
    run_id: str | None = None
    artifact_location: str | None = None


@dataclass(frozen=True)
class CandidateFiles:
    """What goes with a candidate: ``artifacts`` (a file or folder per artifact path) and
    ``metrics`` on its run, ``extra_files`` inside the logged model, ``tags`` on the version."""

    artifacts: dict[str, Path] = field(default_factory=dict)
    metrics: dict[str, float | None] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    extra_files: tuple[Path, ...] = ()


@dataclass(frozen=True, eq=False)  # arrays: compared and hashed by identity
class ServingCheck:
    """An input example and the output the loaded-back model must give for it."""

    example: np.ndarray
    expected: np.ndarray


def log_candidate(
    model: Any,
    example: np.ndarray,
    name: str,
    target: LogTarget,
    files: CandidateFiles | None = None,
    ready_timeout_s: float = 120.0,
) -> Candidate:
    """Log ``model`` (torch.export, signature, input example) with ``files`` to ``target``
    and register it as ``name``."""
    from mlflow import MlflowClient

    with using_tracking(target.tracking_uri):
        return _log_candidate(
            MlflowClient(target.tracking_uri), model, example, name, target,
            files or CandidateFiles(), ready_timeout_s,
        )  # fmt: skip


def _log_candidate(
    client: Any,
    model: Any,
    example: np.ndarray,
    name: str,
    target: LogTarget,
    files: CandidateFiles,
    ready_timeout_s: float,
) -> Candidate:
    import mlflow
    import mlflow.pytorch
    import torch
    from mlflow.models import infer_signature

    experiment, run_id = target.experiment, target.run_id
    if run_id is not None:
        try:
            mlflow.set_experiment(experiment_id=client.get_run(run_id).info.experiment_id)
        except Exception:  # not in this store (e.g. trained against another server)
            run_id = None
    if run_id is None:
        if client.get_experiment_by_name(experiment) is None:
            client.create_experiment(experiment, artifact_location=target.artifact_location)
        mlflow.set_experiment(experiment)
    with torch.no_grad():
        output = model(torch.from_numpy(example)).numpy()
    with mlflow.start_run(run_id=run_id, run_name=None if run_id else f"{experiment}-register"):
        run = mlflow.active_run()
        assert run is not None
        for path, src in files.artifacts.items():
            if src.is_dir():
                mlflow.log_artifacts(str(src), path)
            elif src.exists():
                mlflow.log_artifact(str(src), path)
        finite = {f"eval_{k}": v for k, v in files.metrics.items() if v is not None}
        if finite:
            mlflow.log_metrics(finite)
        info = mlflow.pytorch.log_model(
            model,
            name="model",
            signature=infer_signature(example, output),
            input_example=example,
            pip_requirements=PIP_REQUIREMENTS,
            extra_files=[str(p) for p in files.extra_files] or None,
        )
    # the version and its tags (the fingerprint among them) are created in one call: a run
    # killed in between cannot leave an untagged version that a rerun would register again
    # MLflow prints its own "registered"/"already exists" lines to stderr: a registration the
    # server fails in the middle must still end in one line (Tessera prints the outcome)
    with redirect_stderr(io.StringIO()):
        mv = mlflow.register_model(
            info.model_uri, name, await_registration_for=int(ready_timeout_s), tags=files.tags
        )
    version = str(mv.version)
    return Candidate(name, version, f"models:/{name}/{version}", run.info.run_id)


def registered_candidate(tracking_uri: str, name: str, version: str) -> Candidate:
    """A version registered earlier, as a candidate for the gate."""
    from mlflow import MlflowClient

    mv = MlflowClient(tracking_uri).get_model_version(name, version)
    return Candidate(name, version, f"models:/{name}/{version}", str(mv.run_id))


def wait_until_ready(client: Any, name: str, version: str, timeout_s: float) -> None:
    """Poll the version's status until READY; raise on FAILED_REGISTRATION or timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        status = str(client.get_model_version(name, version).status)
        if status.endswith("READY"):
            return
        if "FAILED" in status or time.monotonic() > deadline:
            raise RegistryError(f"{name} v{version}: status {status}, not READY")
        time.sleep(0.5)


def validate_version(
    model_uri: str, example: np.ndarray, expected: np.ndarray, atol: float = 1e-4
) -> None:
    """Load ``model_uri`` back, run it on the stored tiles; its output must match ``expected``."""
    import mlflow.pytorch
    import torch

    try:
        model = mlflow.pytorch.load_model(model_uri)
        with torch.no_grad():
            out = model(torch.from_numpy(example))
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise RegistryError(f"{model_uri}: does not load and run: {first[:300]}") from None
    got = np.asarray(out.detach().numpy() if hasattr(out, "detach") else out)
    if got.shape != expected.shape:
        raise RegistryError(f"{model_uri}: output shape {got.shape}, expected {expected.shape}")
    if not np.allclose(got, expected, atol=atol, rtol=1e-4):
        worst = float(np.abs(got - expected).max())
        raise RegistryError(f"{model_uri}: outputs differ from the trained model by {worst:.3g}")


def version_with_fingerprint(
    tracking_uri: str, name: str, fingerprint: str
) -> tuple[str, list[str]] | None:
    """A registered version of ``name`` tagged with ``fingerprint``, and its aliases."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri)
    try:
        found = client.search_model_versions(
            f"name = '{name}' and tags.`{FINGERPRINT_TAG}` = '{fingerprint}'"
        )
    except MlflowException:
        return None
    if not found:
        return None
    mv = max(found, key=lambda v: int(v.version))
    aliases = client.get_model_version(name, str(mv.version)).aliases
    return str(mv.version), list(aliases)


def current_champion(tracking_uri: str, name: str, metric: str) -> str | None:
    """The version that holds the champion alias of ``name`` (None without one)."""
    from mlflow import MlflowClient

    return champion_record(MlflowClient(tracking_uri), name, metric)[0]


def champion_record(client: Any, name: str, metric: str) -> tuple[str | None, float | None]:
    """The current champion's version and its value of ``metric`` (None, None without one).

    The value is the champion's primary-value tag when it was judged on ``metric``, else its
    run's ``eval_<metric>`` (None if it has neither: the gate was changed to a new metric).
    """
    from mlflow.exceptions import MlflowException

    try:
        mv = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None, None
    if mv.tags.get(PRIMARY_METRIC_TAG) == metric:
        value = mv.tags.get(PRIMARY_VALUE_TAG)
        return str(mv.version), float(value) if value not in (None, "") else None
    logged = client.get_run(mv.run_id).data.metrics.get(f"eval_{metric}") if mv.run_id else None
    return str(mv.version), None if logged is None else float(logged)


def promote(
    candidate: Candidate,
    tracking_uri: str,
    check: ServingCheck,
    value: float | None,
    rule: GateRule,
    bar: Bar | None = None,
    ready_timeout_s: float = 120.0,
) -> GateDecision:
    """READY → load back and check → gate (against ``bar`` too, when given) → move one alias.
    Raises before any alias moves."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    name, version = candidate.name, candidate.version
    stored = "" if value is None or not math.isfinite(value) else repr(float(value))
    metric = rule.metric
    client.set_model_version_tag(name, version, PRIMARY_METRIC_TAG, metric)
    client.set_model_version_tag(name, version, PRIMARY_VALUE_TAG, stored)
    try:
        wait_until_ready(client, name, version, ready_timeout_s)
        with using_tracking(tracking_uri):
            validate_version(candidate.model_uri, check.example, check.expected)
    except RegistryError as exc:
        client.set_model_version_tag(name, version, "tessera.validation", f"failed: {exc}")
        raise
    client.set_model_version_tag(name, version, "tessera.validation", "passed")
    champ_version, champ_value = champion_record(client, name, metric)
    decision = gate(
        metric, value, champ_value, rule.direction, rule.min_improvement, champ_version, bar
    )
    client.set_model_version_tag(name, version, "tessera.gate", decision.reason)
    client.set_registered_model_alias(name, decision.alias, version)
    return decision
