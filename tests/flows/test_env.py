"""The environment every ``tessera`` command sets up before it imports its tools."""

from __future__ import annotations

import subprocess
import sys

CHECK = """
import sys
from tessera.flows.settings.env import configure_environment
configure_environment()
import rasterio
assert "botocore" not in sys.modules, "rasterio's import ran boto3"
from rasterio.session import AWSSession
creds = AWSSession(aws_access_key_id="a", aws_secret_access_key="b").get_credential_options()
assert creds["AWS_ACCESS_KEY_ID"] == "a" and "botocore" in sys.modules
import boto3.session
assert boto3.session.Session is sys.modules["boto3"].Session
print("ok")
"""


def test_boto3_runs_only_when_an_s3_session_is_made():
    """rasterio imports boto3 at its own import (0.45 s); a command that opens no S3 file never
    runs it, and one that does gets the real module."""
    res = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr[-2000:]
