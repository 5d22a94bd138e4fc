"""dvc.yaml's code deps cover every module a stage runs, so editing one reruns the stage."""

from __future__ import annotations

from pathlib import Path

import grimp
import pytest
import yaml

from tests.helpers import REPO

# What a stage computes is its flow, its steps and what they import. Left out: how the
# Prefect UI shows a run and how a failure reads (never an output); the schema's reference
# to the model constructors (it validates every experiment's model arguments while loading
# params.yaml; the stages that build a model import them themselves); and where the work
# runs: the profile and the runner's Slurm options (no stage's output depends on them, so
# that DVC's record holds wherever the stages ran).
NOT_OUTPUT = {"tessera.flows.markdown", "tessera.flows.flow_helpers"}
SCHEMA_IMPORTS = {
    ("tessera.flows.settings.schema", "tessera.models.run.run_config"),
    ("tessera.flows.settings.schema", "tessera.flows.settings.profiles"),
    ("tessera.flows.settings.schema", "tessera.tasks.training.launch_options"),
    ("tessera.flows.settings.experiments", "tessera.tasks.training.launch_options"),
}
LAUNCHED = {"train": ["tessera.models.run.fit"]}  # run as `python -m`, not imported


def _stage_code(graph: grimp.ImportGraph, stage: str) -> set[str]:
    roots = [f"tessera.flows.{stage}", f"tessera.tasks.steps.{stage}", *LAUNCHED.get(stage, [])]
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        module = todo.pop()
        if module in seen or module in NOT_OUTPUT:
            continue
        seen.add(module)
        todo += [
            m
            for m in graph.find_modules_directly_imported_by(module)
            if m.startswith("tessera.") and (module, m) not in SCHEMA_IMPORTS
        ]
    return seen


def _file_of(module: str) -> str:
    rel = Path(*module.split(".")[1:])
    return f"{rel}/__init__.py" if (REPO / rel).is_dir() else f"{rel}.py"


def _covered(file: str, deps: list[str]) -> bool:
    return any(file == d or file.startswith(d.rstrip("/") + "/") for d in deps)


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("tessera", cache_dir=None)


@pytest.mark.parametrize("stage", ["ingest", "tile", "train", "evaluate", "register", "predict"])
def test_stage_deps_cover_the_code_it_runs(graph, stage):
    spec = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"][stage]
    deps = (spec.get("do") or spec)["deps"]
    missing = sorted(
        f for f in (_file_of(m) for m in _stage_code(graph, stage)) if not _covered(f, deps)
    )
    assert not missing, f"dvc.yaml stage {stage} misses deps on {missing}"
