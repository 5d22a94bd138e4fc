"""``tessera predict``: a trained or registered model applied to whole scenes and volumes;
and the scheduled ``tessera-predict-folder`` flow: every scene of a folder mapped with the
current champion, each once per model version (``prefect.yaml``'s predict deployment)."""

from __future__ import annotations

from contextlib import chdir
from pathlib import Path
from typing import Any

from prefect import flow, unmapped
from prefect.artifacts import create_markdown_artifact
from prefect.states import Completed, Failed, State
from pydantic import BaseModel, Field

from tessera.flows.flow_helpers import failing_in_one_line
from tessera.flows.markdown import artifact_key, predictions_markdown
from tessera.flows.settings.predictions import PredictFlowParams, resolve_prediction
from tessera.flows.settings.schema import PARAMS_FILE, IngestParams, validated_params
from tessera.tasks.prediction.apply import row_bands
from tessera.tasks.prediction.loading import pinned
from tessera.tasks.sources.adhoc import adhoc_sources
from tessera.tasks.steps import read_params_step
from tessera.tasks.steps.ingest import failed_on, inspect_sources
from tessera.tasks.steps.predict import (
    assemble_scene_step,
    list_inputs_step,
    load_model_step,
    plan_maps_step,
    predict_scene_step,
    write_stac_step,
)


@flow(name="tessera-predict", log_prints=True)
@failing_in_one_line
def predict_flow(params: PredictFlowParams) -> State[Any]:
    """Load the model, inspect the inputs, check every map path, then map the scenes (mapped
    tasks on the configured runner); then the STAC Items of the maps and their Catalog."""
    root, opts = Path(params.base), params.options
    out = root / opts.out
    model = load_model_step(params.model)
    ingest = IngestParams(sources=params.sources, on_bad_input=opts.on_bad_input)
    records, rejected = inspect_sources(ingest.sources, root)
    kept, misfits = plan_maps_step(records, model, opts, out, root)
    rejected += misfits
    if rejected and opts.on_bad_input == "fail":
        return failed_on(rejected)
    if not kept:
        return Failed(message=f"{model.ref}: no input to predict")
    source = pinned(params.model, model)  # what each task loads (once per process)
    # a task per scene, or per band of rows of a big one (several workers share it)
    units = [(rec, band) for rec in kept for band in row_bands(rec, model)]
    parts = predict_scene_step.map(
        [rec for rec, _ in units], unmapped(root), unmapped(source), unmapped(opts),
        unmapped(out), [band for _, band in units], desc="predict", unit="part",
    )  # fmt: skip
    results, banded = [], []
    for rec in kept:
        mine = [(band, part) for (r, band), part in zip(units, parts, strict=True) if r is rec]
        if mine[0][0] is None or mine[0][1]["skipped"]:
            results.append(mine[0][1])
        else:
            banded.append((rec, [band for band, _ in mine]))
    if banded:
        results += assemble_scene_step.map(
            [rec for rec, _ in banded], unmapped(root), unmapped(source), unmapped(opts),
            unmapped(out), [bands for _, bands in banded], desc="assemble", unit="scene",
        )  # fmt: skip
    maps = [f for r in results if not r["skipped"] for f in r["files"]]
    stac = write_stac_step(out, maps)  # the Items of the raster maps, and their Catalog
    summary = {
        "model": model.name,
        "version": model.version,
        "maps": maps,
        "stac": None if stac is None else str(stac),
        "skipped": [r["scene"] for r in results if r["skipped"]],
        "rejected": rejected,
        "out": str(out),
    }
    create_markdown_artifact(
        predictions_markdown(summary), key=artifact_key("tessera-predict", model.name)
    )
    return Completed(data=summary)


class FolderParams(BaseModel):
    """A scheduled prediction: every file of ``folder`` matching ``pattern``, with ``model``
    (an alias resolves to its version at each run), skipping those that version mapped."""

    root: str = Field(default=".", description="The project: its params.yaml and MLflow store.")
    folder: str = Field(description="Where new scenes arrive (relative to root).")
    pattern: str = Field(default="*.tif", description="Which files of it are scenes.")
    model: str = Field(default="models:/tessera-landsat8-seg_ae@champion")
    out: str | None = Field(default=None, description="Maps; None: predict.out of params.yaml.")


@flow(name="tessera-predict-folder", log_prints=True)
@failing_in_one_line
def predict_folder_flow(params: FolderParams) -> State[Any]:
    """List the folder, then map its files with the model (the predict flow as a subflow);
    files the same model version mapped before are skipped there."""
    root = Path(params.root).resolve()
    p = validated_params(read_params_step(root / PARAMS_FILE))
    if params.out is not None:
        p = p.model_copy(update={"predict": p.predict.model_copy(update={"out": params.out})})
    files = list_inputs_step(root / params.folder, params.pattern)
    if not files:
        return Completed(message=f"{params.folder}: no file matches {params.pattern}", data={})
    sources = adhoc_sources([Path(f) for f in files], None, False)
    with chdir(root):  # params.yaml's paths (tracking store, outputs) are the project's
        spec = resolve_prediction(p, params.model, None, sources, [], str(root))
        return predict_flow(spec, return_state=True)
