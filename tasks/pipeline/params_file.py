"""Reading ``params.yaml``: the mapping DVC and the pipeline both read (validated by the
config schema of :mod:`tessera.flows.config`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def read_params_file(path: Path) -> dict[str, Any]:
    """The top-level mapping of a YAML params file (empty for an empty file)."""
    loaded = yaml.safe_load(path.read_text())
    if loaded is not None and not isinstance(loaded, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    return loaded or {}
