"""TileDataset's batches: the same in DataLoader workers as in the training process, and made
in shared memory there, so that torch hands them over without copying them again."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader

from tessera.models.data.tiles import TileDataset, collate_batch
from tests.helpers import write_geotiff

KEYS = ("image", "label", "valid", "has_label")


def _shared(batch: dict) -> dict[str, bool]:
    """Which tensors of a worker's batch sit in shared memory (checked in the worker)."""
    return {k: batch[k].is_shared() for k in KEYS if isinstance(batch[k], torch.Tensor)}


class _Probe(TileDataset):
    """The dataset, reporting from the worker whether its tensors were made in shared memory."""

    def __getitems__(self, items):
        batch = super().__getitems__(items)
        return {**batch, "meta": _shared(batch)}


def test_worker_batches_equal_the_processes_and_are_made_in_shared_memory(prefect_api, tmp_path):
    import multiprocessing

    from tessera.flows.cli import run

    rng = np.random.default_rng(2)
    scene = write_geotiff(tmp_path / "s.tif", rng.integers(1, 3000, (3, 64, 64), np.uint16))
    label = write_geotiff(tmp_path / "l.tif", rng.integers(0, 3, (64, 64), np.uint8))
    args = ["tile", "--input", str(scene), "--label", str(label), "--size", "16"]
    assert run([*args, "--out", str(tmp_path / "t"), "--min-valid-fraction", "0"]) == 0
    # a worker forked from a pytest worker (Prefect's threads and handlers inside) fails at
    # exit: the workers fork from a fresh server process that imports the dataset once
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["tessera.models.data.tiles", __name__])
    order = [[5, 0, 9, 3], [1, 14, 2, 7]]
    for normalisation in ("none", "zscore"):  # raw values read into the batch; normalised
        ds = _Probe(tmp_path / "t", normalisation=normalisation)
        loader = DataLoader(ds, batch_sampler=order, num_workers=1, collate_fn=collate_batch,
                            multiprocessing_context=context)  # fmt: skip
        for items, got in zip(order, loader, strict=True):
            here = TileDataset.__getitems__(ds, items)  # the same rows, in this process
            assert got["label"] is not None and got["image"].dtype == here["image"].dtype
            for k in KEYS:
                assert torch.equal(got[k], here[k]), (normalisation, k)
            made = {k: got["meta"][k] for k in ("image", "label", "valid")}
            assert made == dict.fromkeys(made, True), (normalisation, made)
            assert not here["image"].is_shared()  # only workers allocate shared memory
