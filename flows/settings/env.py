"""Offline, project-local defaults for Prefect, MLflow and DVC; set before they are imported."""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import sys
import types
from pathlib import Path
from typing import Any

OFFLINE_DEFAULTS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "60",
    "PREFECT_LOGGING_LEVEL": "WARNING",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",  # its bars while a model is logged
    "DO_NOT_TRACK": "true",
    "DVC_NO_ANALYTICS": "1",
    "CPL_LOG": os.devnull,  # GDAL's own "Warning 1: ..." lines; rasterio still raises errors
}


def project_root(start: Path) -> Path | None:
    """The nearest folder at or above ``start`` holding ``params.yaml`` and ``dvc.yaml``."""
    start = start.resolve()
    for folder in (start, *start.parents):
        if (folder / "params.yaml").is_file() and (folder / "dvc.yaml").is_file():
            return folder
    return None


def state_home(cwd: Path | None = None) -> Path:
    """Where Prefect keeps its database and results: ``.prefect/`` of the project the command
    runs in, else a per-user folder (``$XDG_STATE_HOME/tessera/prefect``); never a random
    working directory."""
    root = project_root(cwd or Path.cwd())
    if root is not None:
        return root / ".prefect"
    return user_state_dir() / "prefect"


def user_state_dir() -> Path:
    """Tessera's per-user state folder: ``$XDG_STATE_HOME/tessera`` (``~/.local/state/tessera``)."""
    xdg = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(xdg) / "tessera"


def configure_environment(cwd: Path | None = None) -> None:
    """Keep every tool offline and its state in the project or the user's state folder; the
    active profile's variables (``TESSERA_PROFILE``) come first."""
    from tessera.flows.settings.profiles import export_profile_env

    export_profile_env()
    os.environ.setdefault("PREFECT_HOME", str(state_home(cwd)))
    with contextlib.suppress(OSError):  # Prefect warns at import when it cannot make it
        Path(os.environ["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)
    for key, value in OFFLINE_DEFAULTS.items():
        os.environ.setdefault(key, value)
    quiet_third_party()
    defer_imports()


# rasterio imports boto3 when it is itself imported (0.45 s of a one-tile ``tessera tile``'s
# 3 s), to make S3 sessions that most commands never open
DEFERRED_MODULES = ("boto3",)


class _Deferred(types.ModuleType):
    """A module imported on its first attribute access. ``importlib.util.LazyLoader`` loads on
    the next ``import`` statement already (Python 3.11 reads ``__spec__`` there)."""

    def __getattr__(self, attr: str) -> Any:
        if sys.modules.get(self.__name__) is self:
            del sys.modules[self.__name__]
        real = importlib.import_module(self.__name__)
        self.__dict__.update(real.__dict__)  # holders of this stub see the real module
        return getattr(real, attr)


def defer_imports(names: tuple[str, ...] = DEFERRED_MODULES) -> None:
    """Let ``names`` be imported by other libraries without running them until one of their
    attributes is used; modules already imported, or not installed, are left alone."""
    for name in names:
        if name in sys.modules:
            continue
        spec = importlib.util.find_spec(name)
        if spec is None:
            continue
        stub = _Deferred(name)
        stub.__spec__ = spec
        sys.modules[name] = stub


def quiet_third_party() -> None:
    """Silence library chatter that is not the user's business (GPU plugins, deprecations)."""
    import logging
    import warnings

    from tessera.tasks.sources.quiet import quiet_decoders

    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=".*nvImageCodec.*")
    # decoder failures are logged with a traceback, then raised: Tessera reports them in one line
    quiet_decoders()
    for name, level in (
        ("dvc", logging.WARNING),  # "Updating lock file" per stage
        ("EventsWorker", logging.ERROR),  # "still processing items" at exit
        ("urllib3", logging.ERROR),  # each HTTP retry; the last failure is reported
    ):
        logging.getLogger(name).setLevel(level)
