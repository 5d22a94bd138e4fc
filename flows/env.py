"""Offline, project-local defaults for Prefect, MLflow and DVC; set before they are imported."""

from __future__ import annotations

import os
from pathlib import Path

OFFLINE_DEFAULTS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "60",
    "PREFECT_LOGGING_LEVEL": "WARNING",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "DVC_NO_ANALYTICS": "1",
}


def configure_environment(root: Path | None = None) -> None:
    """Keep every tool offline and its state inside the project (``.prefect/``)."""
    root = root or Path.cwd()
    os.environ.setdefault("PREFECT_HOME", str(root / ".prefect"))
    for key, value in OFFLINE_DEFAULTS.items():
        os.environ.setdefault(key, value)
    quiet_third_party()


def quiet_third_party() -> None:
    """Silence library chatter that is not the user's business (GPU plugins, deprecations)."""
    import logging
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=".*nvImageCodec.*")
    warnings.filterwarnings("ignore", module="rasterio")
    logging.getLogger("monai.data.nvimgcodec_pydicom_plugin").setLevel(logging.ERROR)
    logging.getLogger("dvc").setLevel(logging.WARNING)  # "Updating lock file" per stage
