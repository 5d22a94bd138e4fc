"""A ``tessera predict`` command resolved into the predict flow's parameters: which model the
reference names, and which inputs."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from tessera.flows.settings.experiments import default_tracking, resolve_experiment
from tessera.flows.settings.schema import TesseraParams
from tessera.models.checkpoint import BEST_CHECKPOINT
from tessera.models.run.run_config import CHECKPOINT_DIR, RUN_CONFIG_FILE, RunConfig
from tessera.tasks.evaluation.clusters import CLUSTERS_FILE
from tessera.tasks.prediction.model import ModelSource
from tessera.tasks.prediction.predict_options import PredictOptions
from tessera.tasks.sources.specs import SourceSpec


class PredictFlowParams(BaseModel):
    """The model, the inputs (sources as ``tessera tile`` reads them) and the options."""

    model: ModelSource
    sources: list[SourceSpec]
    base: str = "."
    options: PredictOptions = PredictOptions()


def model_source(params: TesseraParams, ref: str) -> ModelSource:
    """``models:/NAME@ALIAS`` or ``models:/NAME/VERSION`` (on the configured tracking store),
    an MLM Item of a registered version (``tessera register``'s ``<experiment>_mlm.json``: its
    model, on the Item's bands, scaling, window and classes), an experiment of
    ``params.yaml`` (its best checkpoint), or a checkpoint file of a run (its
    ``run_config.json`` beside it or one folder up)."""
    if ref.startswith("models:/"):
        uri = params.train.tracking_uri or default_tracking(Path.cwd())[0]
        return ModelSource(ref=ref, tracking_uri=uri)
    if ref.endswith(".json"):  # an MLM Item: its model asset, on the Item's contract
        from tessera.tasks.registry.mlm_item import read_contract

        href, contract = read_contract(Path(ref))
        if not href.startswith("models:/"):
            raise ValueError(f"{ref}: its model asset {href} is not a registered model URI")
        uri = params.train.tracking_uri or default_tracking(Path.cwd())[0]
        return ModelSource(ref=href, tracking_uri=uri, contract=contract, contract_from=ref)
    if ref in params.experiments:
        run = _absolute(resolve_experiment(params, ref).run)
        best = Path(run.out_dir) / CHECKPOINT_DIR / BEST_CHECKPOINT
        return ModelSource(ref=ref, run=run, checkpoint=str(best), clusters=_clusters(params, run))
    path = Path(ref)
    if path.is_file():
        for folder in (path.parent, path.parent.parent):
            if (folder / RUN_CONFIG_FILE).is_file():
                run = RunConfig.model_validate_json((folder / RUN_CONFIG_FILE).read_text())
                return ModelSource(
                    ref=ref,
                    run=_absolute(run),
                    checkpoint=str(path.resolve()),
                    clusters=_clusters(params, run),
                )
        raise ValueError(f"{ref}: no {RUN_CONFIG_FILE} beside the checkpoint or one folder up")
    known = ", ".join(sorted(params.experiments)) or "none"
    raise ValueError(
        f"{ref}: not a model URI (models:/NAME@ALIAS), an experiment of params.yaml "
        f"({known}) or a checkpoint file"
    )


def _absolute(run: RunConfig) -> RunConfig:
    """``run`` with its store and folder made absolute against the working directory: the
    model may be loaded by a Dask worker, whose working folder is not the command's."""
    return run.model_copy(
        update={
            "store": str(Path(run.store).resolve()),
            "out_dir": str(Path(run.out_dir).resolve()),
        }
    )


def _clusters(params: TesseraParams, run: RunConfig) -> str:
    """The run's evaluation clusters (a vae's windows are mapped to them)."""
    return str((Path(params.evaluate.out) / run.experiment / CLUSTERS_FILE).resolve())


def named_sources(params: TesseraParams, names: list[str]) -> list[SourceSpec]:
    """The sources of ``ingest.sources`` called ``names``."""
    have = {s.name: s for s in params.ingest.sources}
    missing = [n for n in names if n not in have]
    if missing:
        known = ", ".join(have) or "none"
        raise ValueError(f"no source {', '.join(missing)} in ingest.sources (has: {known})")
    return [have[n] for n in names]


def resolve_prediction(
    params: TesseraParams,
    ref: str | None,
    experiment: str | None,
    sources: list[SourceSpec] | None,
    source_names: list[str],
    base: str,
) -> PredictFlowParams:
    """The predict flow's parameters. ``--experiment`` alone (the ``predict@`` stage) predicts
    the experiment's own and held-out sources with its best checkpoint into
    ``<predict.out>/<experiment>``."""
    options: PredictOptions = params.predict
    if experiment is not None:
        if experiment not in params.experiments:
            known = ", ".join(sorted(params.experiments)) or "none"
            raise ValueError(f"unknown experiment {experiment!r} (params.yaml has: {known})")
        ref = ref or experiment
        if not sources and not source_names:
            exp = params.experiments[experiment]
            source_names = [*exp.dataset.sources, *exp.heldout]
        options = options.model_copy(update={"out": str(Path(options.out) / experiment)})
    if ref is None:
        raise ValueError("tessera predict needs --model (or --experiment)")
    if not sources and not source_names:
        raise ValueError("tessera predict needs --input or --source")
    chosen = list(sources or []) + named_sources(params, source_names)
    return PredictFlowParams(
        model=model_source(params, ref), sources=chosen, base=base, options=options
    )
