"""Atomic stores: a lock against a second writer; SIGKILL leaves nothing partial."""

import fcntl
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd

from tessera.tasks.store.reader import TileStore
from tessera.tasks.store.writer import lock_path
from tests.helpers import write_geotiff


def test_second_writer_is_refused(tmp_path, cli):
    src = write_geotiff(tmp_path / "a.tif", np.ones((16, 16), np.uint8))
    out = tmp_path / "store"
    with open(lock_path(out), "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        rc, _, err = cli("tile", "--input", src, "--out", out, "--size", 8, cwd=tmp_path)
    assert rc == 1 and "another tessera run is writing" in err and str(out) in err
    assert not out.exists()
    assert cli("tile", "--input", src, "--out", out, "--size", 8, cwd=tmp_path)[0] == 0


def _inputs(tmp_path, n=4, side=900):
    rng = np.random.default_rng(0)
    return [
        write_geotiff(
            tmp_path / f"scene{i}.tif",
            rng.integers(1, 60000, size=(4, side, side), dtype=np.uint16),
        )
        for i in range(n)
    ]


def test_sigkill_leaves_no_partial_store_and_rerun_is_identical(tmp_path, cli, subprocess_env):
    srcs = _inputs(tmp_path)
    args = [a for s in srcs for a in ("--input", str(s))] + ["--size", "16"]
    out = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tessera.flows.cli", "tile", *args, "--out", str(out)],
        env=subprocess_env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    staging = tmp_path / "killed.tmp" / "parts"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        done = list(staging.glob("*/part.json")) if staging.exists() else []
        if done:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert not out.exists()

    rc, _, err = cli("tile", *args, "--out", out, cwd=tmp_path)
    assert rc == 0, err
    assert not (tmp_path / "killed.tmp").exists()
    rc, _, err = cli("tile", *args, "--out", tmp_path / "clean", cwd=tmp_path)
    assert rc == 0, err
    a, b = TileStore.open(out), TileStore.open(tmp_path / "clean")
    pd.testing.assert_frame_equal(a.index, b.index)
    assert a.info == b.info
    for i in range(0, len(a), 97):
        np.testing.assert_array_equal(a[i]["image"], b[i]["image"])


def test_a_failed_shard_write_is_never_silent(tmp_path):
    import pytest

    from tessera.tasks.store.shards import ShardSet

    shards = ShardSet(tmp_path, "tiles", (1, 4, 4), np.dtype(np.uint8), False, max_tiles=8)
    ok = np.zeros((1, 4, 4), np.uint8)
    shards.add(np.zeros((2, 4, 4), np.uint8), np.ones((4, 4), bool), None)  # wrong shape: fails
    for _ in range(3):  # later writes succeed; the earlier failure must still surface
        try:
            shards.add(ok, np.ones((4, 4), bool), None)
        except ValueError:
            break
    with pytest.raises(ValueError, match="item"):
        shards.close()
