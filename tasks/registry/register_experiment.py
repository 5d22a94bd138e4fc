"""One experiment into the registry: its serving model, evaluation, lineage and the gate."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from tessera.models.descriptor import DESCRIPTOR_FILE, DIGEST_TAG, ModelDescriptor
from tessera.models.run.run_config import CHECKPOINT_DIR, RUN_FILE, RunConfig
from tessera.models.serving import RECONSTRUCTION_FILE, save_exported
from tessera.tasks.base.files import atomic_write_json
from tessera.tasks.base.outputs import check_output_file, json_keys
from tessera.tasks.evaluation.clusters import CLUSTERS_FILE
from tessera.tasks.evaluation.comparison import BASELINE_NAMES, best_baseline
from tessera.tasks.evaluation.report import METRICS_FILE, PLOTS, REPORT_FILE
from tessera.tasks.registry.gate import CHAMPION, Bar, GateRule, gate_metric
from tessera.tasks.registry.lineage import model_fingerprint
from tessera.tasks.registry.mlflow_registry import (
    FINGERPRINT_TAG,
    CandidateFiles,
    LogTarget,
    RegistryError,
    ServingCheck,
    current_champion,
    log_candidate,
    promote,
    registered_candidate,
    version_with_fingerprint,
)
from tessera.tasks.registry.mlm_item import write_mlm_item


def primary_metric(model_type: str, configured: str | None) -> str:
    """The experiment's gate metric: configured, else the model's own default."""
    from tessera.models.trainers import MODEL_MODULES

    return configured or MODEL_MODULES[model_type].primary_metric


def serving_example(
    run: RunConfig, n_tiles: int
) -> tuple[Any, np.ndarray, np.ndarray, ModelDescriptor, Any]:
    """The best checkpoint's serving module, ``n_tiles`` normalised test tiles, its output,
    the model's ``tessera_model.json``, and its reconstruction module (None without one)."""
    import torch

    from tessera.models.checkpoint import BEST_CHECKPOINT, load_checkpoint, model_descriptor
    from tessera.models.data.datamodule import TileDataModule

    checkpoint = Path(run.out_dir) / CHECKPOINT_DIR / BEST_CHECKPOINT
    loaded = load_checkpoint(checkpoint, run.model["type"], run.trainer.cpu_isa)
    module = loaded.module
    dm = TileDataModule.from_run(run)
    dm.setup("test")
    ds = next(dm.datasets[s] for s in ("test", "val", "train") if len(dm.datasets[s]))
    n = min(n_tiles, len(ds))
    if n < 2:  # a batch of one would freeze the exported batch dimension
        raise RegistryError(f"{run.store}: fewer than 2 tiles for an input example")
    example = ds.__getitems__(list(range(n)))["image"].float()
    model = module.serving_module()
    with torch.no_grad():
        expected = model(example).numpy()
    descriptor = model_descriptor(loaded, run)
    return model, example.numpy(), expected, descriptor, module.reconstruction_module()


def is_registry_record(path: Path) -> bool:
    """A record written by ``tessera register``."""
    return {"experiment", "name", "version", "alias"} <= json_keys(path)


def check_record_output(path: Path) -> Path:
    """Refuse a record path that holds anything but an earlier registry record."""
    return check_output_file(path, is_registry_record, "Tessera registry record")


@dataclass(frozen=True)
class Registration:
    """What an experiment is registered as, and how: the model's name, the gate's rule, the
    record file, the tiles of the input example and the bound on the wait for READY."""

    name: str
    rule: GateRule
    record: Path
    example_tiles: int = 4
    ready_timeout_s: float = 120.0


def register_experiment(
    run: RunConfig, eval_dir: Path, registration: Registration, lineage: dict[str, str]
) -> dict[str, Any]:
    """Log, register, validate and gate one experiment; write its record JSON.

    With the rule's ``require_beats_baseline`` the candidate becomes champion only if it beats
    the best baseline of its evaluation on the gate metric (where it has one)."""
    name, rule = registration.name, registration.rule
    record_path = check_record_output(registration.record)
    metrics_path = eval_dir / METRICS_FILE
    if not metrics_path.exists():
        raise RegistryError(f"{metrics_path}: no evaluation (run `tessera evaluate` first)")
    if not run.tracking_uri:
        raise RegistryError(f"{run.experiment}: no MLflow tracking URI configured")
    metrics: dict[str, float | None] = json.loads(metrics_path.read_text())
    rule = replace(rule, metric=gate_metric(metrics, rule.metric))
    metric = rule.metric
    if metric not in metrics:
        known = ", ".join(sorted(metrics))
        raise RegistryError(f"{metrics_path}: no primary metric {metric!r} (has: {known})")
    run_path = Path(run.out_dir) / RUN_FILE  # absent in a fresh clone: a new run then
    train_run = json.loads(run_path.read_text()).get("mlflow_run_id") if run_path.exists() else None
    value = metrics[metric]
    base: dict[str, Any] = {
        "experiment": run.experiment,
        "name": name,
        "metric": metric,
        "direction": rule.direction,
        "value": value,
    }  # what both records (registered or unchanged) say
    served = serving_example(run, registration.example_tiles)
    model, example, expected, descriptor, reconstruction = served
    judged = metrics_path.read_bytes() + metric.encode() + descriptor.to_bytes()
    if reconstruction is not None:  # a version without the reconstruction graph is not this one
        judged += RECONSTRUCTION_FILE.encode()
    clusters = eval_dir / CLUSTERS_FILE  # what maps a latent-only model's windows to clusters
    with_clusters = descriptor.output == "latent_mean" and clusters.is_file()
    if with_clusters:
        judged += clusters.read_bytes()
    fingerprint = model_fingerprint(model, judged)
    same = version_with_fingerprint(run.tracking_uri, name, fingerprint)
    if same is not None and same[1]:  # the same weights and evaluation, judged: nothing new
        version, aliases = same
        champion = current_champion(run.tracking_uri, name, metric)
        unchanged: dict[str, Any] = base | {
            "version": version,
            "model_uri": f"models:/{name}/{version}",
            "alias": CHAMPION if CHAMPION in aliases else aliases[0],
            "reason": f"unchanged: the same model and evaluation as v{version}",
            "champion_version": champion,
            "registered": False,
        }
        atomic_write_json(record_path, unchanged)
        write_mlm_item(record_path, descriptor, unchanged, _parameters(model))
        return unchanged
    if same is not None:  # registered by a run that stopped before the gate: judge it now
        candidate = registered_candidate(run.tracking_uri, name, same[0])
    else:
        with tempfile.TemporaryDirectory(prefix="tessera-model-") as tmp:
            card = Path(tmp) / DESCRIPTOR_FILE
            card.write_bytes(descriptor.to_bytes())
            extra = [card]
            if reconstruction is not None:
                import torch

                graph = Path(tmp) / RECONSTRUCTION_FILE
                extra.append(save_exported(reconstruction, torch.from_numpy(example), graph))
            if with_clusters:
                extra.append(clusters)
            files = CandidateFiles(
                artifacts={
                    "eval": metrics_path,
                    "eval/plots": eval_dir / PLOTS,
                    "eval/report": eval_dir / REPORT_FILE,
                },
                metrics=metrics,
                tags={
                    **lineage,
                    "tessera.experiment": run.experiment,
                    FINGERPRINT_TAG: fingerprint,
                    DIGEST_TAG: descriptor.digest(),
                },
                extra_files=tuple(extra),
            )
            target = LogTarget(run.tracking_uri, run.experiment, train_run, run.artifact_location)
            candidate = log_candidate(
                model, example, name, target, files, registration.ready_timeout_s
            )
    best = best_baseline(metrics, metric) if rule.require_beats_baseline else None
    bar = Bar(BASELINE_NAMES[best[0]], best[1]) if best else None
    check = ServingCheck(example, expected)
    decision = promote(
        candidate, run.tracking_uri, check, value, rule, bar, registration.ready_timeout_s
    )
    record: dict[str, Any] = base | {
        "version": candidate.version,
        "model_uri": candidate.model_uri,
        "run_id": candidate.run_id,
        "logged_to_training_run": candidate.run_id == train_run,
        "alias": decision.alias,
        "reason": decision.reason,
        "previous_champion": decision.champion_version,
        "champion_version": candidate.version
        if decision.alias == CHAMPION
        else decision.champion_version,
        "previous_champion_value": decision.champion_value,
        "lineage": lineage,
        "registered": True,
    }
    atomic_write_json(record_path, record)
    write_mlm_item(record_path, descriptor, record, _parameters(model))
    return record


def _parameters(model: Any) -> int | None:
    """The serving module's parameter count (None for a module without parameters())."""
    try:
        return int(sum(p.numel() for p in model.parameters()))
    except AttributeError:
        return None
