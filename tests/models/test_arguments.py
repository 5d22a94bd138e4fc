"""The constructor arguments read from source are the imported classes' own, and reading them
imports neither torch nor Lightning."""

from __future__ import annotations

import inspect
import subprocess
import sys
import typing

import pytest

from tessera.models.arguments import constructor_arguments


@pytest.mark.parametrize("model_type", ["seg_ae", "vae", "cvae", "ssvae"])
def test_arguments_match_the_imported_constructor(model_type: str) -> None:
    """Names, types and defaults agree with inspect on the LightningModule itself."""
    from tessera.models.trainers import MODEL_MODULES

    init = MODEL_MODULES[model_type].__dict__["__init__"]
    hints = typing.get_type_hints(init)
    expected = [
        (name, hints[name], ... if p.default is inspect.Parameter.empty else p.default)
        for name, p in inspect.signature(init).parameters.items()
        if name != "self"
    ]
    assert [tuple(arg) for arg in constructor_arguments(model_type)] == expected


def test_unknown_model_type_names_the_choices() -> None:
    with pytest.raises(ValueError, match="choose from"):
        constructor_arguments("unet")


def test_validation_imports_no_torch() -> None:
    """The `tessera` parent validates params.yaml without starting torch or Lightning."""
    code = (
        "import sys; from tessera.models.run.run_config import validate_model_params; "
        "validate_model_params({'type': 'seg_ae', 'skips': 'seg'}); "
        "print(sorted(m for m in ('torch', 'lightning') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
