"""An import Tessera's own processes skip: torchmetrics' ``scipy.signal``.

Lightning imports torchmetrics, whose package and two audio subpackages import
``scipy.signal`` only to alias ``scipy.signal.hamming`` for the SRMRpy package. Tessera uses
neither, yet every training rank and every command that loads a model paid for it: ~1 CPU-s,
all of SciPy's signal, linalg, special and optimize modules. Measured here, ``import
lightning.pytorch`` took 3.7-4.6 CPU-s as it comes and 2.7-3.6 s with :func:`skip_scipy_signal`
(three runs each, alternating); after it ``scipy`` is not imported at all.

The skip touches two modules only: ``torchmetrics`` runs with ``package_available("scipy")``
false, and ``torchmetrics.utilities.imports._SCIPI_AVAILABLE`` (read by the audio packages'
alias alone) is False. Nothing else of torchmetrics changes, and SciPy still imports wherever
code asks for it. Only the entry points call it (:mod:`.startup`): importing Tessera as a
library leaves a user's imports alone.
"""

from __future__ import annotations

import importlib.abc
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any

_TOP = "torchmetrics"
_FLAGS = "torchmetrics.utilities.imports"


class _Loader(importlib.abc.Loader):
    """The module's own loader, with the skip around its execution."""

    def __init__(self, inner: Any, name: str) -> None:
        self._inner, self._name = inner, name

    def __getattr__(self, attr: str) -> Any:  # resources, source and code: the loader's own
        return getattr(self._inner, attr)

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        return self._inner.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        if self._name == _FLAGS:
            self._inner.exec_module(module)
            module._SCIPI_AVAILABLE = False  # type: ignore[attr-defined]
            return
        try:
            import lightning_utilities.core.imports as flags
        except ImportError:  # not Lightning's torchmetrics: nothing to skip
            self._inner.exec_module(module)
            return
        available = flags.package_available
        flags.package_available = lambda name: name != "scipy" and available(name)  # type: ignore[assignment]
        try:
            self._inner.exec_module(module)
        finally:
            flags.package_available = available


class _Finder(importlib.abc.MetaPathFinder):
    """Finds the two modules as the other finders do, then wraps their loaders."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname not in (_TOP, _FLAGS):
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _Loader(spec.loader, fullname)
                return spec
        return None


def skip_scipy_signal() -> None:
    """Install the skip (once), before Lightning or torchmetrics is imported."""
    if _TOP in sys.modules or any(isinstance(f, _Finder) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _Finder())
