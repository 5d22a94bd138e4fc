"""Training entry point: ``python -m tessera.models.run.fit --config RUN.json [--resume]``.

Run it as it is for one process, under ``torchrun --nproc_per_node N`` for DDP, or under
``srun`` on SLURM: Lightning reads the launcher's environment. Everything is written into the
run's staging folder beside ``out_dir``; rank zero writes ``train_summary.json``, the loss
curves and the reconstructions, then moves the run over ``out_dir``.
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from tessera.models.checkpoint import (
    BEST_CHECKPOINT,
    DESCRIPTOR_KEY,
    LAST_CHECKPOINT,
    MODEL_TYPE_KEY,
)
from tessera.models.run.cpu import pin_cpu_kernels
from tessera.models.run.run_config import (
    CHECKPOINT_DIR,
    LAUNCH_ENV,
    PLOT_DIR,
    RUN_FILE,
    SUMMARY_FILE,
    RunConfig,
    validate_model_params,
)
from tessera.models.run.run_folder import attempt_file, promote, staging_dir
from tessera.tasks.base.error_policy import debugging, one_line
from tessera.tasks.base.files import atomic_write_json
from tessera.tasks.base.startup import start_process

# FREEZE_NOTE: a rank holds ~500,000 objects once torch, Lightning and MLflow are imported (with
# the collector's thresholds of tessera.tasks.base.collector while they are), and
# each full collection of Python's cyclic GC walks them all (~0.25 s), during the run and
# several times while the interpreter tears down. Freezing what is alive once the run is built
# (after one collection), and again before exit, skips that work. A tiny two-epoch run took
# 7.1 and 7.7 s against 8.3 and 9.8 s without (an A/B at the same minutes, one rank).


def build(config: RunConfig) -> tuple[Any, Any]:
    """The DataModule and the LightningModule of a run config."""
    from tessera.models.data.datamodule import TileDataModule
    from tessera.models.descriptor import ModelDescriptor
    from tessera.models.trainers import MODEL_MODULES

    ds = config.dataset
    dm = TileDataModule.from_run(config)
    info = dm.info
    model = validate_model_params(config.model)
    kind = model.pop("type")
    kind_class = MODEL_MODULES[kind]
    with_classes = kind_class.needs_classes(kind, ds.tile_class)
    if with_classes and not info["class_names"]:
        raise ValueError(f"{config.store}: sources {ds.sources} have no label classes for {kind}")
    module = kind_class(**kind_class.data_arguments(kind, info, with_classes), **model)
    # the checkpoints carry the model type and descriptor: loading needs nothing else
    descriptor = ModelDescriptor.build(config, dm.store_info, module.serving_output)
    module.checkpoint_extras = {
        MODEL_TYPE_KEY: kind,
        DESCRIPTOR_KEY: descriptor.to_bytes().decode(),
    }
    return dm, module


class CurveRecorder:
    """Collects epoch-level losses from ``trainer.callback_metrics`` (as a Lightning callback)."""

    keys = ("train_loss", "val_loss")

    def __new__(cls) -> Any:  # built lazily so importing this module stays light
        import lightning.pytorch as pl

        class _Recorder(pl.Callback):
            def __init__(self) -> None:
                self.history: dict[str, list[float]] = {k: [] for k in cls.keys}
                self.batches = 0

            def on_train_batch_end(self, *args: Any) -> None:
                self.batches += 1

            def on_validation_epoch_end(self, trainer: pl.Trainer, module: Any) -> None:
                if trainer.sanity_checking:
                    return
                for k in cls.keys:
                    v = trainer.callback_metrics.get(k)
                    if v is not None:
                        self.history[k].append(float(v))

            def state_dict(self) -> dict[str, Any]:
                return {"history": self.history, "batches": self.batches}

            def load_state_dict(self, state: dict[str, Any]) -> None:
                self.history, self.batches = state["history"], state["batches"]

        return _Recorder()


def _logger(config: RunConfig) -> Any:
    """MLflow's logger on the global rank 0 only: the others never log (Lightning's MLflow
    logger is rank-zero only), and importing MLflow costs each rank ~1.3 s."""
    from lightning.pytorch.utilities.rank_zero import rank_zero_only

    if not config.tracking_uri or getattr(rank_zero_only, "rank", 0) != 0:
        return False
    from lightning.pytorch.loggers import MLFlowLogger

    return MLFlowLogger(
        experiment_name=config.experiment,
        run_name=config.experiment,
        tracking_uri=config.tracking_uri,
        artifact_location=config.artifact_location,
        tags={"tessera.experiment": config.experiment, "tessera.model": config.model["type"]},
    )


def _trainer(
    config: RunConfig,
    out: Path,
    logger: Any,
    unused_parameters: bool = False,
    automatic_optimization: bool = True,
) -> tuple[Any, Any, Any]:
    """The Lightning trainer and its checkpoint and curve callbacks. ``unused_parameters``: the
    module has parameters without a gradient in some steps, which plain DDP refuses. Lightning
    clips gradients only under automatic optimisation; a module that steps its own optimisers
    clips them itself (``BaseModule.gradient_clip_val``)."""
    import lightning.pytorch as pl

    from tessera.models.run.callbacks import PortableCheckpoint, early_stopping, progress_bar

    t = config.trainer
    ckpt = PortableCheckpoint(
        dirpath=out / CHECKPOINT_DIR,
        filename=Path(BEST_CHECKPOINT).stem,
        monitor=t.monitor,
        mode=t.monitor_mode,
        save_top_k=1,
        auto_insert_metric_name=False,
        enable_version_counter=False,
    )
    # Lightning 2.6 refreshes save_last only when a top-k save happens, so "last" has its own
    # callback: the latest epoch, every epoch, for --resume
    last = PortableCheckpoint(
        dirpath=out / CHECKPOINT_DIR,
        filename=Path(LAST_CHECKPOINT).stem,
        monitor=None,
        save_top_k=1,
        every_n_epochs=1,
        enable_version_counter=False,
    )
    curves = CurveRecorder()
    from tessera.models.run.rng_state import RngState

    strategy = t.strategy
    if strategy == "auto" and t.devices * t.num_nodes > 1:
        strategy = "ddp_find_unused_parameters_true" if unused_parameters else "ddp"
    trainer = pl.Trainer(
        accelerator=t.accelerator,
        devices=t.devices,
        num_nodes=t.num_nodes,
        strategy=strategy,
        precision=t.precision,
        max_epochs=t.max_epochs,
        limit_train_batches=t.limit_train_batches,
        limit_val_batches=t.limit_val_batches,
        deterministic=t.deterministic,
        log_every_n_steps=t.log_every_n_steps,
        gradient_clip_val=t.gradient_clip_val if automatic_optimization else None,
        logger=logger,
        callbacks=[ckpt, last, curves, RngState(), progress_bar(), *early_stopping(t)],
        default_root_dir=str(out),
        enable_model_summary=False,
    )
    return trainer, ckpt, curves


def _plot(
    module: Any, dm: Any, out: Path, config: RunConfig, history: dict[str, list[float]]
) -> list[Path]:
    """Loss curves and reconstructions of a few validation tiles, as PNG."""
    import torch

    from tessera.models.plots import plot_curves, plot_reconstructions

    paths = []
    hist = {k: v for k, v in history.items() if v}
    if hist:
        paths.append(out / PLOT_DIR / "loss_curve.png")
        plot_curves(hist, paths[-1], f"{config.experiment}: loss per epoch")
    ds = dm.datasets["val"] if len(dm.datasets["val"]) else dm.datasets["train"]
    batch = ds.__getitems__(list(range(min(4, len(ds)))))
    module.eval()
    with torch.no_grad():
        shown, label_keys = module.example_columns(
            {**batch, "image": batch["image"].to(module.device)}
        )
        cols = {k: v.cpu().numpy() for k, v in shown.items()}
        if len(cols) > 1:
            paths.append(out / PLOT_DIR / "reconstructions.png")
            plot_reconstructions(
                cols, paths[-1], config.experiment, label_keys, None, dm.info["class_names"]
            )
    return paths


def _finite(metrics: dict[str, Any]) -> dict[str, float]:
    out = {}
    for k, v in metrics.items():
        f = float(v)
        out[k] = f if math.isfinite(f) else None
    return out  # type: ignore[return-value]


def restarts() -> int:
    """How often this run was restarted: torchrun restarted its ranks (``--max-restarts``)
    or Slurm requeued its job."""
    counts = (os.environ.get(k, "") for k in ("TORCHELASTIC_RESTART_COUNT", "SLURM_RESTART_COUNT"))
    return sum(int(c) for c in counts if c.isdigit())


def fit(config: RunConfig, resume: bool = False) -> dict[str, Any] | None:
    """Train, test the best checkpoint, and (rank zero) write the summary; returns it on rank 0.

    Everything is written into the run's staging folder; rank zero moves it over the
    experiment's folder once the summary is written (:mod:`tessera.models.run.run_folder`). A
    resumed or restarted run continues from the staging folder's last checkpoint."""
    import lightning.pytorch as pl

    start = time.perf_counter()
    out = Path(config.out_dir)
    stage = staging_dir(out)
    pin_cpu_kernels(config.trainer.threads, config.trainer.cpu_isa)
    pl.seed_everything(config.trainer.seed, workers=True, verbose=False)
    dm, module = build(config)
    gc.collect()
    gc.freeze()  # see FREEZE_NOTE
    try:
        return _run(config, resume, dm, module, out, stage, start)
    finally:  # an in-process caller (the benchmarks) gets its collector back
        gc.unfreeze()


def _run(
    config: RunConfig, resume: bool, dm: Any, module: Any, out: Path, stage: Path, start: float
) -> dict[str, Any] | None:
    """The built run: fit, test, and on rank zero the plots, summary and promotion."""
    last = stage / CHECKPOINT_DIR / LAST_CHECKPOINT
    if resume and not last.exists():
        raise FileNotFoundError(f"{last}: no checkpoint to resume from")
    from_last = (resume or restarts() > 0) and last.exists()
    logger = _logger(config)
    module.gradient_clip_val = config.trainer.gradient_clip_val
    trainer, ckpt, curves = _trainer(
        config, stage, logger, module.unused_parameters_at_start, module.automatic_optimization
    )
    ckpt_path = str(last) if from_last else None
    trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path, weights_only=True)
    fit_metrics = _finite(trainer.callback_metrics)
    # testing restores callback state from the best checkpoint: keep the full run's record
    steps, history = curves.batches, {k: list(v) for k, v in curves.history.items()}
    best = ckpt.best_model_path or str(last)
    test_metrics: dict[str, float] = {}
    if len(dm.datasets["test"]):
        results = trainer.test(
            module, datamodule=dm, ckpt_path=best, weights_only=True, verbose=False
        )
        test_metrics = _finite(results[0]) if results else {}
    if not trainer.is_global_zero:
        return None
    plots = _plot(module, dm, stage, config, history)
    run_id = getattr(logger, "run_id", None) if logger else None
    summary: dict[str, Any] = {
        "experiment": config.experiment,
        "model_type": config.model["type"],
        "world_size": trainer.world_size,
        "epochs": trainer.current_epoch,
        "steps": steps,
        "optimizer_steps": trainer.global_step,
        "best_checkpoint": os.path.relpath(best, stage) if best else None,
        "best_val_loss": min(history["val_loss"]) if history["val_loss"] else None,
        "history": history,
        "monitor": {
            config.trainer.monitor: None
            if ckpt.best_model_score is None
            else float(ckpt.best_model_score)
        },
        "final_metrics": fit_metrics,
        "test_metrics": test_metrics,
        "plots": [os.path.relpath(p, stage) for p in plots],
        "data": {
            **dm.info,
            "sources": config.dataset.sources,
            "n_train": len(dm.datasets["train"]),
        },
    }
    if hasattr(module, "compression_ratio"):
        summary["compression_ratio"] = module.compression_ratio
        summary["capacity_mode"] = module.mode
    if logger and run_id:
        client = logger.experiment
        for p in plots:
            client.log_artifact(run_id, str(p), "plots")
        for k, v in test_metrics.items():
            if v is not None:
                client.log_metric(run_id, k, v)
    this_run = {
        "wall_time_s": round(time.perf_counter() - start, 2),
        "mlflow_run_id": run_id,
        "launch": os.environ.get(LAUNCH_ENV),
        "restarts": restarts(),
    }
    atomic_write_json(stage / RUN_FILE, this_run)
    atomic_write_json(stage / SUMMARY_FILE, summary)
    promote(stage, out)
    return summary | this_run


def check_same_code() -> None:
    """Refuse to train with another Tessera than the command that launched this rank (a node
    with an older install would otherwise train, or fail late, on other code)."""
    from tessera.models.version import FINGERPRINT_ENV, identity

    want = os.environ.get(FINGERPRINT_ENV)
    if want and identity() != want:
        node = os.environ.get("SLURMD_NODENAME") or socket.gethostname()
        raise RuntimeError(
            f"node {node} runs Tessera {identity()}, the launching command {want}; "
            "install the same Tessera on every node"
        )


def main(argv: list[str] | None = None) -> int:
    """CLI of the entry point; bad configs get one line and exit 1."""
    parser = argparse.ArgumentParser(prog="python -m tessera.models.run.fit")
    parser.add_argument("--config", required=True, type=Path, help="run config JSON")
    parser.add_argument("--resume", action="store_true", help="continue from last.ckpt")
    args = parser.parse_args(argv)
    where = str(args.config)
    try:
        check_same_code()
        config = RunConfig.model_validate_json(args.config.read_text())
        where = config.out_dir  # the experiment's folder, not its staging copy of the config
        staging_dir(config.out_dir).mkdir(parents=True, exist_ok=True)
        fit(config, args.resume)
    except Exception as exc:  # one line for users; TESSERA_DEBUG=1 shows the traceback
        if debugging():
            raise
        line = f"{where}: {one_line(exc)}"
        error_file = os.environ.get("TESSERA_ERROR_FILE")
        if error_file:  # the launcher reports it as its own one-line error; the first rank
            try:  # of an attempt to fail holds the cause (the others then lose their peer)
                with open(attempt_file(Path(error_file), restarts()), "x") as fh:
                    fh.write(line + "\n")
            except FileExistsError:
                pass
        else:
            print(f"tessera.models.run.fit: {line}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    start_process()  # before torch and Lightning are imported (they are, lazily, by main)
    code = main()
    gc.freeze()  # see FREEZE_NOTE
    sys.exit(code)
