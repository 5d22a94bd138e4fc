"""The LightningModules' constructor arguments, read from their source without importing them.

``tessera train``, ``evaluate`` and ``register`` validate ``params.yaml`` in the parent process,
which never imports torch: the training child must set ATen's and oneDNN's instruction sets
before torch starts, and importing Lightning costs ~10 s per command. So the signatures are read
with :mod:`ast` from ``models/trainers/`` (the model type of each class from ``MODEL_MODULES``),
their annotations resolved against :mod:`tessera.models.kinds`. There is still one list of
arguments: the constructors themselves (a test checks this reading against the imported classes).
"""

from __future__ import annotations

import ast
import functools
import typing
from pathlib import Path
from typing import Any, NamedTuple

from tessera.models import kinds

TRAINERS = Path(__file__).parent / "trainers"
# what an annotation may name: builtins, Literal and Any, and the named choices
_NAMES: dict[str, Any] = {
    "int": int,
    "float": float,
    "str": str,
    "bool": bool,
    "list": list,
    "dict": dict,
    "tuple": tuple,
    "None": None,
    "Literal": typing.Literal,
    "Any": Any,
} | {name: value for name, value in vars(kinds).items() if not name.startswith("_")}


class Argument(NamedTuple):
    """One constructor argument: its name, type and default (``...`` when it has none)."""

    name: str
    annotation: Any
    default: Any


def _type(node: ast.expr, where: str) -> Any:
    """An annotation's type; anything but names, subscripts, ``|`` and constants is refused."""
    allowed = (ast.Name, ast.Subscript, ast.BinOp, ast.BitOr, ast.Constant, ast.Tuple, ast.Load)
    for sub in ast.walk(node):
        if not isinstance(sub, allowed):
            raise TypeError(f"{where}: unsupported annotation {ast.unparse(node)!r}")
        if isinstance(sub, ast.Name) and sub.id not in _NAMES:
            raise TypeError(f"{where}: {sub.id!r} is not in tessera.models.kinds")
    code = compile(ast.Expression(node), where, "eval")
    return eval(code, {"__builtins__": {}}, dict(_NAMES))


@functools.cache
def _modules() -> dict[str, str]:
    """Model type -> class name, from ``MODEL_MODULES`` in ``trainers/__init__.py``."""
    tree = ast.parse((TRAINERS / "__init__.py").read_text())
    for node in tree.body:
        if (
            isinstance(node, ast.AnnAssign)
            and ast.unparse(node.target) == "MODEL_MODULES"
            and isinstance(node.value, ast.Dict)
        ):
            keys, values = node.value.keys, node.value.values
            pairs = zip(keys, values, strict=True)
            return {ast.literal_eval(k): ast.unparse(v) for k, v in pairs if k is not None}
    raise LookupError("MODEL_MODULES not found in models/trainers/__init__.py")


@functools.cache
def _constructors() -> dict[str, tuple[str, ast.FunctionDef]]:
    """Class name -> (file, its own ``__init__``) for every class in ``trainers/``."""
    found = {}
    for path in sorted(TRAINERS.glob("*.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ClassDef):
                for item in node.body:
                    if isinstance(item, ast.FunctionDef) and item.name == "__init__":
                        found[node.name] = (path.name, item)
    return found


@functools.cache
def constructor_arguments(model_type: str) -> tuple[Argument, ...]:
    """The arguments of the LightningModule that trains ``model_type``, ``self`` excluded."""
    modules = _modules()
    if model_type not in modules:
        raise ValueError(f"unknown model type {model_type!r}; choose from {sorted(modules)}")
    where, init = _constructors()[modules[model_type]]
    args = init.args.args[1:]
    defaults = [...] * (len(args) - len(init.args.defaults)) + list(init.args.defaults)
    out = []
    for arg, default in zip(args, defaults, strict=True):
        if arg.annotation is None:
            raise TypeError(f"{where}: argument {arg.arg!r} has no annotation")
        value = default if default is ... else ast.literal_eval(default)
        out.append(Argument(arg.arg, _type(arg.annotation, where), value))
    return tuple(out)
