"""The one model loader (``tessera.models.checkpoint``): a checkpoint alone rebuilds its model."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from tessera.models.checkpoint import (
    BEST_CHECKPOINT,
    DESCRIPTOR_KEY,
    MODEL_TYPE_KEY,
    load_checkpoint,
    model_descriptor,
)
from tessera.models.descriptor import ModelDescriptor
from tessera.models.run.run_config import CHECKPOINT_DIR, RUN_CONFIG_FILE, RunConfig
from tessera.tasks.store.format import StoreInfo
from tests.helpers import TINY_EXPERIMENTS


def _run(root: Path, name: str) -> tuple[RunConfig, Path]:
    folder = root / "models" / name
    run = RunConfig.model_validate_json((folder / RUN_CONFIG_FILE).read_text())
    return run, folder / CHECKPOINT_DIR / BEST_CHECKPOINT


def _store_built(run: RunConfig, checkpoint: Path) -> torch.nn.Module:
    """The model as the training built it from its run config and store, with the weights."""
    from tessera.models.run.fit import build

    _, module = build(run)
    module.load_state_dict(torch.load(checkpoint, weights_only=True)["state_dict"])
    return module.eval()


@pytest.mark.parametrize("name", sorted(TINY_EXPERIMENTS))
def test_a_checkpoint_alone_rebuilds_the_trained_model_and_its_descriptor(
    tiny_trained, tmp_path, name
):
    run, checkpoint = _run(tiny_trained.root, name)
    alone = tmp_path / "elsewhere.ckpt"
    shutil.copyfile(checkpoint, alone)
    loaded = load_checkpoint(alone)  # no run config, no model type, no store
    assert loaded.model_type == run.model["type"]
    assert not loaded.module.training
    expected = _store_built(run, checkpoint)
    x = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        got = loaded.module.serving_module()(x)
        want = expected.serving_module()(x)
    assert torch.equal(got, want)
    info = StoreInfo.read(Path(run.store))
    assert loaded.descriptor == ModelDescriptor.build(run, info, expected.serving_output)
    # the descriptor comes from the checkpoint: a run whose store is gone still gets it
    gone = run.model_copy(update={"store": str(tmp_path / "no-store")})
    assert model_descriptor(loaded, gone) == loaded.descriptor


def test_an_older_checkpoint_loads_with_its_experiments_type_and_store(tiny_trained, tmp_path):
    run, checkpoint = _run(tiny_trained.root, "tiny-seg")
    state = torch.load(checkpoint, weights_only=True)
    del state[MODEL_TYPE_KEY], state[DESCRIPTOR_KEY]
    older = tmp_path / "older.ckpt"
    torch.save(state, older)
    with pytest.raises(ValueError, match=r"older.ckpt: no model type recorded"):
        load_checkpoint(older)
    loaded = load_checkpoint(older, "seg_ae")
    assert loaded.descriptor is None
    info = StoreInfo.read(Path(run.store))
    built = ModelDescriptor.build(run, info, loaded.module.serving_output)
    assert model_descriptor(loaded, run) == built
    with pytest.raises(ValueError, match=r"ckpt: a seg_ae checkpoint, not vae"):
        load_checkpoint(checkpoint, "vae")


def test_what_is_not_a_tessera_checkpoint_is_refused_in_one_line(tiny_trained, tmp_path):
    _, checkpoint = _run(tiny_trained.root, "tiny-vae")
    with pytest.raises(FileNotFoundError, match=r"missing.ckpt: no checkpoint"):
        load_checkpoint(tmp_path / "missing.ckpt")
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(checkpoint.read_bytes()[:5000])
    with pytest.raises(ValueError, match=r"truncated.ckpt: not a readable checkpoint"):
        load_checkpoint(truncated)
    pickled = tmp_path / "pickled.ckpt"  # an object weights_only refuses to unpickle
    torch.save({"state_dict": {}, "payload": Path("x")}, pickled)
    with pytest.raises(ValueError, match=r"pickled.ckpt: not a readable checkpoint"):
        load_checkpoint(pickled)
    bare = tmp_path / "bare.ckpt"
    torch.save(torch.zeros(3), bare)
    with pytest.raises(ValueError, match=r"bare.ckpt: not a Lightning checkpoint"):
        load_checkpoint(bare)
    other = tmp_path / "other.ckpt"  # weights of another shape than its hyper-parameters say
    state = torch.load(checkpoint, weights_only=True)
    state["hyper_parameters"] = {**state["hyper_parameters"], "latent_dim": 3}
    torch.save(state, other)
    with pytest.raises(ValueError, match=r"other.ckpt: does not fit this Tessera's vae"):
        load_checkpoint(other)
