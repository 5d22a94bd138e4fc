"""Lineage of a registered model: the data, tile store, code and parameters it came from,
and its fingerprint."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path
from typing import Any

import yaml


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest() if path.exists() else "none"


def _git(root: Path, *args: str) -> str | None:
    try:
        res = subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, check=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout.strip()


def git_sha(root: Path) -> str:
    """The commit checked out at ``root`` ("none" outside git)."""
    return _git(root, "rev-parse", "HEAD") or "none"


def data_md5(dvc_file: Path) -> str:
    """The md5 DVC recorded for ``data/`` in ``data.dvc`` ("none" without one)."""
    if not dvc_file.exists():
        return "none"
    outs = (yaml.safe_load(dvc_file.read_text()) or {}).get("outs") or [{}]
    return str(outs[0].get("md5", "none"))


def tile_store_version(store: Path) -> str:
    """The store's format version and a hash of its index and manifest (its content id)."""
    from tessera.tasks.store.format import INDEX_FILE, INFO_FILE, StoreInfo

    manifest = store / INFO_FILE
    version = StoreInfo.read(store).version
    h = hashlib.sha256(manifest.read_bytes())
    h.update((store / INDEX_FILE).read_bytes())
    return f"v{version}-{h.hexdigest()[:16]}"


def lineage_tags(
    root: Path, store: Path, params_sha256: str, flow_run_id: str | None
) -> dict[str, str]:
    """git_sha, git_dirty, data_md5, dvc_lock_md5, params_sha256, tile_store_version, run id."""
    sha = git_sha(root)
    status = _git(root, "status", "--porcelain", "--untracked-files=no")
    return {
        "git_sha": sha,
        "git_dirty": "unknown" if status is None else str(bool(status)).lower(),
        "data_md5": data_md5(root / "data.dvc"),
        "dvc_lock_md5": _md5(root / "dvc.lock"),
        "params_sha256": params_sha256,
        "tile_store_version": tile_store_version(store),
        "prefect_flow_run_id": flow_run_id or "none",
    }


def model_fingerprint(model: Any, metrics_bytes: bytes) -> str:
    """sha256 of a model's weights and buffers (by name) and of its evaluation."""
    h = hashlib.sha256(metrics_bytes)
    for key, tensor in sorted(model.state_dict().items()):
        h.update(key.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()
