"""The steps of ``tessera predict``: load the model, plan the maps, map each scene."""

from __future__ import annotations

from prefect.cache_policies import NONE

from tessera.tasks.prediction.apply import list_inputs, plan_maps
from tessera.tasks.prediction.loading import (
    assemble_scene_with,
    cached_model,
    predict_scene_with,
)
from tessera.tasks.prediction.stac_items import write_stac
from tessera.tasks.steps import Step

# a loaded model passes between these steps: no input hashing and no result cache
list_inputs_step = Step(list_inputs, "list-inputs", cache_policy=NONE)
load_model_step = Step(cached_model, "load-model", cache_policy=NONE)
plan_maps_step = Step(plan_maps, "plan-maps", cache_policy=NONE)
predict_scene_step = Step(predict_scene_with, "predict-scene", cache_policy=NONE)
assemble_scene_step = Step(assemble_scene_with, "assemble-maps", cache_policy=NONE)
write_stac_step = Step(write_stac, "write-stac", cache_policy=NONE)
