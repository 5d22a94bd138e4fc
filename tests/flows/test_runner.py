"""Mapped tasks on prefect-dask's DaskTaskRunner with a LocalCluster of one worker process
(each worker process imports Tessera and torch, ~5-10 CPU-s; the cluster tier runs two)."""

import numpy as np
import pandas as pd
import pytest

from tessera.tasks.store.reader import TileStore
from tests.helpers import write_geotiff, write_nifti

pytestmark = pytest.mark.slow


def test_dask_runner_gives_the_same_store_as_threads(tmp_path, cli):
    rng = np.random.default_rng(5)
    a = write_geotiff(tmp_path / "a.tif", rng.integers(1, 500, (2, 60, 60), dtype=np.uint16))
    b = write_nifti(
        tmp_path / "b.nii.gz",
        rng.random((20, 20, 12)).astype(np.float32),
        np.diag([2.0, 2.0, 3.0, 1.0]),
    )
    common = ["--input", a, "--input", b, "--size", 16, "--min-valid-fraction", 0]
    dask = ["--task-runner", "dask", "--set", "runner.n_workers=1"]
    rc, _, err = cli("tile", *common, "--out", tmp_path / "dask", *dask, cwd=tmp_path)
    assert rc == 0, err
    rc, _, err = cli("tile", *common, "--out", tmp_path / "threads", cwd=tmp_path)
    assert rc == 0, err
    d, t = TileStore.open(tmp_path / "dask"), TileStore.open(tmp_path / "threads")
    pd.testing.assert_frame_equal(d.index, t.index)
    assert d.info == t.info and len(d) > 0


def test_a_scheduler_address_without_a_prefect_server_is_refused(tmp_path, cli, monkeypatch):
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    scene = write_geotiff(tmp_path / "s.tif", np.ones((1, 16, 16), np.uint16))
    rc, _, err = cli("tile", "--input", scene, "--set", "runner.address=tcp://127.0.0.1:1",
                     cwd=tmp_path)  # fmt: skip
    assert rc == 1 and len(err.strip().splitlines()) == 1
    assert "runner.address" in err and "PREFECT_API_URL" in err
    assert not (tmp_path / "tiles").exists()
