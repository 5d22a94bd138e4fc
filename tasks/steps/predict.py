"""The steps of ``tessera predict``: load the model, plan the maps, map each scene."""

from __future__ import annotations

from prefect.cache_policies import NONE

from tessera.tasks.prediction.apply import list_inputs, plan_maps, predict_scene
from tessera.tasks.prediction.loading import load_model
from tessera.tasks.steps import Step

# a loaded model passes between these steps: no input hashing and no result cache
list_inputs_step = Step(list_inputs, "list-inputs", cache_policy=NONE)
load_model_step = Step(load_model, "load-model", cache_policy=NONE)
plan_maps_step = Step(plan_maps, "plan-maps", cache_policy=NONE)
predict_scene_step = Step(predict_scene, "predict-scene", cache_policy=NONE)
