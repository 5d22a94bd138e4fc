"""The scheduled ``tessera-predict-folder`` flow: every scene of a folder mapped with the
current champion, each once per model version (``prefect.yaml``'s predict deployment)."""

from __future__ import annotations

from contextlib import chdir
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.states import Completed, State
from pydantic import BaseModel, Field

from tessera.flows.config import PARAMS_FILE, validated_params
from tessera.flows.failures import failing_in_one_line
from tessera.flows.predict import predict_flow
from tessera.flows.predictions import resolve_prediction
from tessera.tasks.sources.adhoc import adhoc_sources
from tessera.tasks.steps.pipeline import read_params_step
from tessera.tasks.steps.predict import list_inputs_step


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
