"""Offline, project-local defaults for Prefect, MLflow and DVC; set before they are imported."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

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
    from tessera.flows.profiles import export_profile_env

    export_profile_env()
    os.environ.setdefault("PREFECT_HOME", str(state_home(cwd)))
    with contextlib.suppress(OSError):  # Prefect warns at import when it cannot make it
        Path(os.environ["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)
    for key, value in OFFLINE_DEFAULTS.items():
        os.environ.setdefault(key, value)
    quiet_third_party()


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
