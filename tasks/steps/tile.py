"""The steps of ``tessera tile``: read the catalogue, cut each scene, publish the store."""

from __future__ import annotations

from tessera.tasks.sources.catalog import load_catalog
from tessera.tasks.sources.refusals import rejecting_bad_input
from tessera.tasks.steps import Step
from tessera.tasks.tiling.cut import tile_scene
from tessera.tasks.tiling.publication import publish_store

load_catalog_step = Step(load_catalog, "load-catalog")
# a full disk or a read-only output is reported in one line, not retried with a traceback
tile_scene_step = Step(rejecting_bad_input(tile_scene), "tile-scene")
publish_store_step = Step(publish_store, "publish-store")
