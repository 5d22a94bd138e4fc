"""The cache key of a source's inspection: a Prefect ``cache_key_fn`` over the code, the
source's parameters and its files' content (no Prefect import needed here)."""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import Any

from tessera.tasks.sources.paths import as_path, exists, resolve_paths, sha256_file

_SOURCES = Path(__file__).parent
_INSPECTION_CODE = ("catalog", "inspect_raster", "inspect_volume", "raster", "records", "volume")


@functools.cache
def _inspection_code_hash() -> str:
    """Hash of the code behind an inspection: a new Tessera never reuses an old answer."""
    h = hashlib.sha256()
    for name in _INSPECTION_CODE:
        h.update((_SOURCES / f"{name}.py").read_bytes())
    return h.hexdigest()


def source_cache_key(context: Any, parameters: dict[str, Any]) -> str:
    """Cache key of an inspection: the code, the source's parameters and its files' content."""
    spec, base = parameters["spec"], Path(parameters["base"])
    h = hashlib.sha256(_inspection_code_hash().encode())
    h.update(spec.model_dump_json().encode())
    h.update(str(base.resolve()).encode())
    paths = resolve_paths(spec.paths, spec.glob, base)
    if spec.label:
        labels = [spec.label.path] if spec.label.path else spec.label.paths
        paths += [base / as_path(p) for p in labels]
    for p in paths:
        h.update(str(p).encode())
        h.update(sha256_file(p).encode() if exists(p) else b"missing")
    return f"inspect-{h.hexdigest()}"
