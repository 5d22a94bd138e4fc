"""``tessera predict``: a trained or registered model applied to whole scenes and volumes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, unmapped
from prefect.artifacts import create_markdown_artifact
from prefect.states import Completed, Failed, State
from pydantic import BaseModel

from tessera.flows.config import IngestParams
from tessera.flows.failures import failing_in_one_line
from tessera.flows.ingest import failed_on, inspect_all
from tessera.flows.markdown import artifact_key, predictions_markdown
from tessera.tasks.prediction.apply import row_bands
from tessera.tasks.prediction.loading import pinned
from tessera.tasks.prediction.model import ModelSource
from tessera.tasks.prediction.predict_options import PredictOptions
from tessera.tasks.sources.specs import SourceSpec
from tessera.tasks.steps.predict import (
    assemble_scene_step,
    load_model_step,
    plan_maps_step,
    predict_scene_step,
)


class PredictFlowParams(BaseModel):
    """The model, the inputs (sources as ``tessera tile`` reads them) and the options."""

    model: ModelSource
    sources: list[SourceSpec]
    base: str = "."
    options: PredictOptions = PredictOptions()


@flow(name="tessera-predict", log_prints=True)
@failing_in_one_line
def predict_flow(params: PredictFlowParams) -> State[Any]:
    """Load the model, inspect the inputs, check every map path, then map the scenes (mapped
    tasks on the configured runner)."""
    root, opts = Path(params.base), params.options
    out = root / opts.out
    model = load_model_step(params.model)
    ingest = IngestParams(sources=params.sources, on_bad_input=opts.on_bad_input)
    records, rejected = inspect_all(ingest, root)
    kept, misfits = plan_maps_step(records, model, opts, out)
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
    summary = {
        "model": model.name,
        "version": model.version,
        "maps": [f for r in results if not r["skipped"] for f in r["files"]],
        "skipped": [r["scene"] for r in results if r["skipped"]],
        "rejected": rejected,
        "out": str(out),
    }
    create_markdown_artifact(
        predictions_markdown(summary), key=artifact_key("tessera-predict", model.name)
    )
    return Completed(data=summary)
