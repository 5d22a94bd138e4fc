"""``tessera evaluate``: one trained experiment judged on the tile store's test split."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NONE
from pydantic import BaseModel

from flows.config import EvaluateParams, TesseraParams
from flows.train import artifact_key, resolve_experiment
from models.config import CHECKPOINT_DIR, RunConfig
from models.evaluate import run_inference
from tasks.evaluation import score_latents, training_history, write_evaluation

# arrays pass between these tasks: no input hashing, no result cache
run_inference_task = task(name="run-inference", cache_policy=NONE)(run_inference)
score_latents_task = task(name="score-latents", cache_policy=NONE)(score_latents)
training_history_task = task(name="training-history", cache_policy=NONE)(training_history)
write_evaluation_task = task(name="write-evaluation", retries=1, cache_policy=NONE)(
    write_evaluation
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
def evaluate_flow(params: EvaluateFlowParams) -> dict[str, Any]:
    """Infer on the split, score the latents, write metrics, plots, maps and the report."""
    ev, run = params.evaluate, params.run
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
    rep = score_latents_task(inf, ev.k, ev.k_max, ev.seed, ev.tsne)
    history = training_history_task(Path(run.out_dir))
    result: dict[str, Any] = write_evaluation_task(
        Path(params.out_dir), run.experiment, inf, rep, history, Path(run.store), ev.seed
    )
    create_markdown_artifact(result["markdown"], key=artifact_key("tessera-eval", run.experiment))
    return result
