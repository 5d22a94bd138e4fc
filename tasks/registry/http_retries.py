"""MLflow's HTTP retries, as the environment variables MLflow reads on each call."""

from __future__ import annotations


def http_retry_environment(retries: int, backoff_s: int, timeout_s: int) -> dict[str, str]:
    """``retries`` attempts, sleeping backoff·2^i between (none before the first retry), each
    request answered within ``timeout_s``. MLflow's defaults (7 retries, factor 2, 120 s)
    took 247 s to give up on a server that was down (measured)."""
    return {
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(retries),
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": str(backoff_s),
        "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": str(timeout_s),
    }
