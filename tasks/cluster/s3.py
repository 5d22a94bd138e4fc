"""An S3-compatible object store on 127.0.0.1: moto's server, with the cluster's buckets.

moto keeps objects in memory only, so the buckets are made at every start. Clients find it
through the standard variables (``AWS_ENDPOINT_URL`` for boto3, s3fs and DVC; GDAL's own
``AWS_S3_ENDPOINT``, ``AWS_HTTPS``, ``AWS_VIRTUAL_HOSTING`` for ``/vsis3/`` reads).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from tessera.tasks.cluster.processes import Daemon, listening, start, wait_until

BUCKETS = ("tessera",)  # dvc/, mlflow/ and data/ prefixes inside one bucket
KEY, SECRET, REGION = "tessera", "tessera-secret", "us-east-1"


def client_environment(port: int) -> dict[str, str]:
    """What an S3 client (boto3, s3fs, DVC, GDAL) needs to use this store."""
    return {
        "AWS_ACCESS_KEY_ID": KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_S3_ENDPOINT": f"127.0.0.1:{port}",  # GDAL: host:port only
        "AWS_HTTPS": "NO",
        "AWS_VIRTUAL_HOSTING": "FALSE",
        "AWS_MAX_ATTEMPTS": "2",  # botocore's and s3fs's retries multiply: 10 took 394 s
    }


def _moto() -> str:
    found = shutil.which("moto_server") or str(Path(sys.executable).parent / "moto_server")
    return found


def start_s3(folder: Path, port: int, within_s: float = 60) -> Daemon:
    """Start moto's S3 server on ``port`` and create the buckets."""
    daemon = start("s3", [_moto(), "-H", "127.0.0.1", "-p", str(port)], folder / "s3.log")
    wait_until(lambda: listening(port), within_s, daemon, "listening")
    make_buckets(port)
    return daemon


def make_buckets(port: int) -> None:
    """Create the cluster's buckets (an existing one is kept)."""
    import boto3

    s3 = boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{port}",
        aws_access_key_id=KEY,
        aws_secret_access_key=SECRET,
        region_name=REGION,
    )
    have = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    for bucket in BUCKETS:
        if bucket not in have:
            s3.create_bucket(Bucket=bucket)
