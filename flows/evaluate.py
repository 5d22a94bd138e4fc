"""``tessera evaluate``: one trained experiment judged on the tile store's test split and on
its held-out sources."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.states import Completed, State

from tessera.flows.flow_helpers import failing_in_one_line
from tessera.flows.markdown import artifact_key
from tessera.flows.settings.experiments import EvaluateFlowParams
from tessera.models.inference import InferenceOptions
from tessera.tasks.evaluation.report import Findings, check_evaluation_output
from tessera.tasks.prediction.scoring import SceneScoring
from tessera.tasks.steps.evaluate import (
    heldout_scores_step,
    run_inference_step,
    score_latents_step,
    stitched_scores_step,
    training_history_step,
    write_evaluation_step,
)


@flow(name="tessera-evaluate")
@failing_in_one_line
def evaluate_flow(params: EvaluateFlowParams) -> State[Any]:
    """Infer on the split, score the latents, write metrics, plots, maps and the report."""
    ev, run = params.evaluate, params.run
    check_evaluation_output(Path(params.out_dir))  # before any work
    inference = InferenceOptions(
        ev.split, ev.tile_class, ev.noise, ev.seed, ev.batch_size, map_splits=tuple(ev.map_splits)
    )
    inf = run_inference_step(run, Path(params.checkpoint), inference)
    rep = score_latents_step(inf, ev.k, ev.k_max, ev.seed, ev.tsne)
    history = training_history_step(Path(run.out_dir))
    scoring = SceneScoring(
        run, Path(params.checkpoint), Path(params.catalog), Path.cwd(), params.overlap,
        params.blend,
    )  # fmt: skip
    stitched = stitched_scores_step(scoring, ev.split)
    heldout = heldout_scores_step(scoring, params.heldout, inf.baselines.pixel_classifier)
    found = Findings(inf, rep, history, stitched, heldout)
    result = write_evaluation_step(Path(params.out_dir), run.experiment, found, Path(run.store))
    create_markdown_artifact(result["markdown"], key=artifact_key("tessera-eval", run.experiment))
    return Completed(data=result)
