"""Random-number state in checkpoints, so that ``--resume`` continues the run it interrupted.

Lightning restores weights, optimiser and loops, not the generators that shuffle batches and
draw augmentations and latent samples: a resumed run then differs from an uninterrupted one.
This callback stores the torch, numpy and Python states with every checkpoint and puts them
back when training restarts (after the sanity check, which draws numbers of its own).
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

KEY = "tessera_rng"


def capture() -> dict[str, Any]:
    """The generators' states as tensors and plain lists (loadable with ``weights_only``)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy": [str(kind), torch.as_tensor(np.asarray(keys, dtype=np.int64)), int(pos),
                  int(has_gauss), float(gauss)],
        "python": [list(random.getstate()[1]), random.getstate()[2]],
        "python_version": random.getstate()[0],
    }  # fmt: skip


def restore(state: dict[str, Any]) -> None:
    """Put the generators back as :func:`capture` saw them."""
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    internal, gauss_next = state["python"]
    random.setstate((state["python_version"], tuple(internal), gauss_next))


class RngState:
    """A Lightning callback: RNG state saved with each checkpoint, restored on resume."""

    def __new__(cls) -> Any:  # built lazily so importing this module stays light
        import lightning.pytorch as pl

        class _RngState(pl.Callback):
            def __init__(self) -> None:
                self.pending: dict[str, Any] | None = None

            def on_save_checkpoint(self, trainer: Any, module: Any, ckpt: dict[str, Any]) -> None:
                ckpt[KEY] = capture()

            def on_load_checkpoint(self, trainer: Any, module: Any, ckpt: dict[str, Any]) -> None:
                self.pending = ckpt.get(KEY)

            def on_train_start(self, trainer: Any, module: Any) -> None:
                if self.pending is not None:
                    restore(self.pending)
                    self.pending = None

        return _RngState()
