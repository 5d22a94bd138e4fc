"""Trainer and network constructors are the params.yaml schema: every argument documented."""

from __future__ import annotations

import inspect

import pytest
from torch import nn

from tessera.models.nets import blocks, vae_nets
from tessera.models.nets import seg_nets as nets
from tessera.models.trainers import MODEL_MODULES


def _constructors() -> list[type]:
    mods = [c for m in (nets, vae_nets, blocks) for _, c in inspect.getmembers(m, inspect.isclass)]
    own = [
        c
        for c in mods
        if issubclass(c, nn.Module)
        and c.__module__ in (nets.__name__, vae_nets.__name__, blocks.__name__)
    ]
    return sorted({*own, *MODEL_MODULES.values()}, key=lambda c: c.__name__)


@pytest.mark.parametrize("cls", _constructors(), ids=lambda c: c.__name__)
def test_every_constructor_argument_is_documented(cls):
    doc = inspect.getdoc(cls) or ""
    assert "Args:" in doc, f"{cls.__name__} has no Args: section"
    args = doc.split("Args:", 1)[1]
    params = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    missing = [p for p in params if f"\n{p}: " not in f"\n{inspect.cleandoc(args)}"]
    assert not missing, f"{cls.__name__}: undocumented {missing}"
