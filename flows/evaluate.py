"""``tessera evaluate``: one trained experiment judged on the tile store's test split."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NONE
from prefect.states import Completed, Failed, State
from pydantic import BaseModel

from flows.config import EvaluateParams, TesseraParams
from flows.failures import failing_in_one_line
from flows.train import artifact_key, resolve_experiment
from models.config import CHECKPOINT_DIR, RunConfig
from models.evaluate import run_inference
from tasks.evaluation.latents import score_latents
from tasks.evaluation.report import check_evaluation_output, training_history, write_evaluation
from tasks.store.errors import StepError, returning_errors

# arrays pass between these tasks: no input hashing, no result cache
# errors come back as values (one line, no Prefect traceback)
run_inference_task = task(name="run-inference", cache_policy=NONE)(returning_errors(run_inference))
score_latents_task = task(name="score-latents", cache_policy=NONE)(returning_errors(score_latents))
training_history_task = task(name="training-history", cache_policy=NONE)(
    returning_errors(training_history)
)
write_evaluation_task = task(name="write-evaluation", cache_policy=NONE)(
    returning_errors(write_evaluation)
)


class EvaluateFlowParams(BaseModel):
    """A resolved experiment, its checkpoint and the evaluation settings."""

    run: RunConfig
    checkpoint: str
    out_dir: str
    evaluate: EvaluateParams


def resolve_evaluation(
    params: TesseraParams, name: str, checkpoint: Path | None = None
) -> EvaluateFlowParams:
    """The experiment's run config, its best checkpoint (unless given) and the output folder."""
    run = resolve_experiment(params, name).run
    ckpt = checkpoint or Path(run.out_dir) / CHECKPOINT_DIR / "best.ckpt"
    return EvaluateFlowParams(
        run=run,
        checkpoint=str(ckpt),
        out_dir=str(Path(params.evaluate.out) / name),
        evaluate=params.evaluate,
    )


@flow(name="tessera-evaluate")
@failing_in_one_line
def evaluate_flow(params: EvaluateFlowParams) -> State[Any]:
    """Infer on the split, score the latents, write metrics, plots, maps and the report."""
    ev, run = params.evaluate, params.run
    check_evaluation_output(Path(params.out_dir))  # before any work
    inf = run_inference_task(
        run,
        Path(params.checkpoint),
        ev.split,
        ev.tile_class,
        ev.noise,
        ev.seed,
        ev.batch_size,
        map_splits=tuple(ev.map_splits),
    )
    if isinstance(inf, StepError):
        return Failed(message=inf.message)
    rep = score_latents_task(inf, ev.k, ev.k_max, ev.seed, ev.tsne)
    if isinstance(rep, StepError):
        return Failed(message=rep.message)
    history = training_history_task(Path(run.out_dir))
    if isinstance(history, StepError):
        return Failed(message=history.message)
    result = write_evaluation_task(
        Path(params.out_dir), run.experiment, inf, rep, history, Path(run.store)
    )
    if isinstance(result, StepError):
        return Failed(message=result.message)
    create_markdown_artifact(result["markdown"], key=artifact_key("tessera-eval", run.experiment))
    return Completed(data=result)
