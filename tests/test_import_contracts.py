"""The import contracts of pyproject.toml can fail: each one breaks on the import it forbids."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO

LINT_IMPORTS = str(Path(sys.executable).parent / "lint-imports")

# contract name (start) -> (file, the import that breaks it)
BREAKS = {
    "Layers: flows over tasks over models": (
        "models/data/tiles.py",
        "import tessera.tasks.sources.records",
    ),
    "Rooms of tasks": ("tasks/sources/paths.py", "import tessera.tasks.tiling.grid"),
    "Rooms of flows": ("flows/tile.py", "import tessera.flows.ingest"),
    "The tile store and the base room import no module": (
        "tasks/store/format.py",
        "import tessera.models.nets.blocks",
    ),
    "Prefect only in flows and the steps": ("tasks/sources/paths.py", "import prefect"),
    "MLflow only in tasks.registry.mlflow_registry": (
        "tasks/registry/register_experiment.py",
        "import mlflow",
    ),
    "DVC only in tasks.pipeline.dvc_stages": ("flows/pipeline.py", "import dvc.repo"),
}
# more imports each contract forbids: models may read the store's format, reader and band
# statistics and the base room, not the rest of the store; the base room is the lowest room
# of tasks, and imports neither flows nor models
MORE_BREAKS = [
    ("Layers: flows over tasks over models", "models/data/tiles.py",
     "import tessera.tasks.store.writer"),
    ("Rooms of tasks", "tasks/base/files.py", "import tessera.tasks.store.format"),
    ("The tile store and the base room import no module", "tasks/base/outputs.py",
     "import tessera.models.nets.blocks"),
]  # fmt: skip


def _copy_of_code(dest: Path) -> Path:
    """The project's code and pyproject.toml, with the ``tessera`` links, under ``dest``."""
    for room in ("flows", "tasks", "models"):
        shutil.copytree(REPO / room, dest / room, ignore=shutil.ignore_patterns("__pycache__"))
    (dest / "tessera").mkdir()
    shutil.copy(REPO / "tessera" / "__init__.py", dest / "tessera" / "__init__.py")
    for room in ("flows", "tasks", "models"):
        (dest / "tessera" / room).symlink_to(f"../{room}")
    shutil.copy(REPO / "pyproject.toml", dest / "pyproject.toml")
    return dest


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}  # this copy's tessera, not the installed one
    return subprocess.run(
        [LINT_IMPORTS, "--no-cache"], cwd=root, env=env, capture_output=True, text=True, timeout=60
    )


def test_contracts_hold_on_the_code(tmp_path):
    got = _lint_imports(_copy_of_code(tmp_path))
    assert got.returncode == 0, got.stdout
    assert f"{len(BREAKS)} kept, 0 broken" in got.stdout


@pytest.mark.parametrize(
    ("contract", "file", "line"),
    [(name, *BREAKS[name]) for name in sorted(BREAKS)] + MORE_BREAKS,
)
def test_each_contract_breaks_on_the_import_it_forbids(tmp_path, contract, file, line):
    root = _copy_of_code(tmp_path)
    with open(root / file, "a") as fh:
        fh.write(f"\n{line}  # noqa\n")
    got = _lint_imports(root)
    assert got.returncode != 0
    assert "1 broken" in got.stdout, got.stdout
    broken = got.stdout.split("Broken contracts", 1)[1].splitlines()
    assert any(ln.startswith(contract) for ln in broken), got.stdout


def test_the_tessera_links_exist_and_resolve_to_the_top_level_rooms():
    for room in ("flows", "tasks", "models"):
        link = REPO / "tessera" / room
        assert link.is_symlink(), f"{link} is not a link"
        assert link.resolve() == (REPO / room).resolve()
        assert (link / "__init__.py").is_file()
    import tessera.flows

    assert Path(tessera.flows.__file__).resolve() == (REPO / "flows" / "__init__.py").resolve()


@pytest.mark.parametrize(
    "line", ["import flows.cli", "from tasks.store import format", "from models import nets"]
)
def test_a_bare_import_of_a_room_fails_ruff(tmp_path, line):
    ruff = str(Path(sys.executable).parent / "ruff")
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    probe = tmp_path / "probe.py"
    probe.write_text(f"{line}\nfrom tessera.flows import cli\n\n__all__ = ['cli']\n")
    got = subprocess.run(
        [ruff, "check", "--no-cache", "--select", "TID251", "--output-format", "concise", "."],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert got.returncode == 1, got.stdout
    assert got.stdout.count("TID251") == 1, got.stdout  # the bare import only
    assert "not the bare folder" in got.stdout


def test_no_module_name_names_two_things():
    """Within flows/, tasks/ and models/ a module name is used once, except ``__init__.py``
    and a stage's flow and step (``flows/tile.py`` and ``tasks/steps/tile.py``)."""
    where: dict[str, set[str]] = {}
    for room in ("flows", "tasks", "models"):
        for path in (REPO / room).rglob("*.py"):
            where.setdefault(path.name, set()).add(str(path.relative_to(REPO)))
    shared = {
        name: paths
        for name, paths in where.items()
        if len(paths) > 1
        and name != "__init__.py"
        and paths != {f"flows/{name}", f"tasks/steps/{name}"}
    }
    assert shared == {}
