"""Small projects for the cluster tier, and running ``tessera`` in them on the cluster."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import chdir, contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from tests.helpers import write_geotiff

TESSERA = str(Path(sys.executable).parent / "tessera")


def scene_project(root: Path, experiments: dict[str, Any], size: int = 128) -> Path:
    """A labelled 4-band scene (3 classes) as the source ``scene`` of ``params.yaml``, tiled
    into 16-px tiles under ``tiles/``, trained into ``models/``; nothing run yet."""
    rng = np.random.default_rng(0)
    label = np.zeros((size, size), np.uint8)
    label[:, size * 3 // 8 : size * 3 // 4] = 1
    label[size * 5 // 8 :, :] = 2
    means = np.array([[1000, 3000, 6000], [2000, 2500, 500], [800, 4000, 3000], [500, 600, 9000]])
    image = means[:, label] + rng.integers(0, 300, (4, size, size))
    root.mkdir(parents=True, exist_ok=True)
    write_geotiff(root / "scene.tif", image.astype(np.uint16), nodata=0)
    write_geotiff(root / "mask.tif", label)
    source = {"name": "scene", "kind": "geotiff", "paths": ["scene.tif"]}
    params = {
        "ingest": {"sources": [source | {"label": {"kind": "raster", "path": "mask.tif"}}]},
        "tile": {"out": "tiles", "size": 16, "stride": 16, "split": {"block_size": 32}},
        "train": {
            "store": "tiles",
            "out": "models",
            "trainer": {"max_epochs": 2, "log_every_n_steps": 1},
            "loader": {"batch_size": 8},
        },
        "predict": {"out": "predictions"},
        "experiments": experiments,
    }
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return root


def tessera(args: list[Any], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``tessera ARGS`` in ``cwd`` with ``env`` as its whole environment, run in this process
    (a CLI process spends ~2.5 CPU-s importing before it starts), its Prefect API the one
    ``env`` names; pytest's timeout bounds it. Tests that kill a command, or time one, start
    ``TESSERA`` themselves."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from tessera.flows.cli import run

    out, err = io.StringIO(), io.StringIO()
    api = {PREFECT_API_URL: env.get("PREFECT_API_URL") or None}
    with _environment(env), chdir(cwd), redirect_stdout(out), redirect_stderr(err):
        with temporary_settings(updates=api):  # type: ignore[arg-type]
            rc = run([str(a) for a in args])
    return subprocess.CompletedProcess([TESSERA, *map(str, args)], rc, out.getvalue(),
                                       err.getvalue())  # fmt: skip


@contextmanager
def _environment(env: dict[str, str]) -> Iterator[None]:
    """``os.environ`` is ``env`` for the block, then what it was."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def ok(res: subprocess.CompletedProcess[str]) -> str:
    """Its stdout, once it succeeded (else the failure, stderr's tail included)."""
    assert res.returncode == 0, f"rc {res.returncode}: {res.stderr[-3000:]}"
    return res.stdout


def one_line(res: subprocess.CompletedProcess[str]) -> str:
    """The whole of stderr, which must be one ``tessera:`` line, of a failed command."""
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert res.returncode == 1 and len(lines) == 1, res.stderr[-3000:]
    assert lines[0].startswith("tessera: ") and "Traceback" not in res.stderr
    return lines[0]


def digests(folder: Path) -> dict[str, str]:
    """Every file below ``folder`` and its sha256."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }
