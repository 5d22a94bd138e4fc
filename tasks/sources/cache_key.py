"""The cache key of a source's inspection: a Prefect ``cache_key_fn`` over the code, the
source's parameters and its files' state (no Prefect import needed here)."""

from __future__ import annotations

import functools
import hashlib
import secrets
from pathlib import Path
from typing import Any

from tessera.tasks.sources.paths import as_path, exists, is_remote, resolve_paths, sha256_file

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
    """Cache key of an inspection: the code, the source's parameters and its files' state."""
    spec, base = parameters["spec"], Path(parameters["base"])
    h = hashlib.sha256(_inspection_code_hash().encode())
    h.update(spec.model_dump_json().encode())
    h.update(str(base.resolve()).encode())
    paths = resolve_paths(spec.paths, spec.glob, base)
    if spec.kind == "stac":  # its assets are its files: an asset changes, the Item may not
        from tessera.tasks.sources.stac_source import stac_scenes

        try:
            paths += [b.path for refs in stac_scenes(spec, base).values() for b in refs]
        except Exception:  # the inspection says what is wrong, in one line; nothing cached
            return f"inspect-uncached-{secrets.token_hex(8)}"
    if spec.label:
        labels = [spec.label.path] if spec.label.path else spec.label.paths
        paths += [base / as_path(p) for p in labels]
    for p in paths:
        h.update(str(p).encode())
        h.update(file_state(p).encode())
    return f"inspect-{h.hexdigest()}"


def file_state(path: Path) -> str:
    """What changes whenever a file's content does, read without reading the file (the
    inspection hashes it anyway; hashing it here too read every input twice): its size,
    inode, and modification and change times. The change time cannot be set back by a user
    tool, so rewriting a file in place with its old size and modification time still
    changes it. An object in a store: its ETag and size."""
    if is_remote(path):
        try:
            return sha256_file(path) if exists(path) else "missing"
        except Exception:  # the store or server does not answer: the inspection says so
            return f"unreadable-{secrets.token_hex(8)}"
    try:
        st = path.stat()
    except OSError:
        return "missing"
    if path.is_dir():  # a DICOM series: every file below it
        files = sorted(f for f in path.rglob("*") if f.is_file())
        return hashlib.sha256("".join(file_state(f) for f in files).encode()).hexdigest()
    return f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"
