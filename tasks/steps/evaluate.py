"""The steps of ``tessera evaluate``: infer, score the latents, write the outputs."""

from __future__ import annotations

from prefect.cache_policies import NONE

from tessera.models.inference import run_inference
from tessera.tasks.evaluation.latents import score_latents
from tessera.tasks.evaluation.report import training_history, write_evaluation
from tessera.tasks.prediction.scoring import heldout_scores, stitched_scores
from tessera.tasks.steps import Step

# evaluate: arrays pass between these steps, so no input hashing and no result cache
run_inference_step = Step(run_inference, "run-inference", cache_policy=NONE)
score_latents_step = Step(score_latents, "score-latents", cache_policy=NONE)
training_history_step = Step(training_history, "training-history", cache_policy=NONE)
stitched_scores_step = Step(stitched_scores, "stitched-scores", cache_policy=NONE)
heldout_scores_step = Step(heldout_scores, "heldout-scores", cache_policy=NONE)
write_evaluation_step = Step(write_evaluation, "write-evaluation", cache_policy=NONE)
