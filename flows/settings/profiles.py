"""Profiles: where a command's work runs, chosen without touching ``params.yaml``.

``TESSERA_PROFILE`` names a YAML file with two keys: ``env`` (variables exported into the
command, unless already set: the Prefect and MLflow servers, the S3 endpoint, ``SLURM_CONF``)
and ``runner`` (merged over ``params.yaml``'s ``runner`` section: Dask, Slurm). Neither
changes what a stage computes, so DVC's record of the pipeline stays valid on the cluster.
``tessera cluster up`` writes one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

PROFILE_ENV = "TESSERA_PROFILE"


class Profile(BaseModel):
    """A profile file."""

    model_config = ConfigDict(extra="forbid")
    env: dict[str, str] = Field(default_factory=dict, description="Exported unless set.")
    runner: dict[str, Any] = Field(default_factory=dict, description="Over params' runner.")


def read_profile() -> Profile | None:
    """The profile ``TESSERA_PROFILE`` names (None without one); a bad one is a ValueError."""
    name = os.environ.get(PROFILE_ENV)
    if not name:
        return None
    from tessera.tasks.base.files import read_yaml_mapping

    path = Path(name)
    try:
        return Profile.model_validate(read_yaml_mapping(path))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(map(str, first["loc"]))
        raise ValueError(f"{PROFILE_ENV}={path}: {where}: {first['msg']}") from None
    except OSError as exc:
        raise ValueError(f"{PROFILE_ENV}={path}: {exc.strerror or exc}") from None


def export_profile_env() -> None:
    """Export the profile's variables (those not already set)."""
    profile = read_profile()
    for key, value in (profile.env if profile else {}).items():
        os.environ.setdefault(key, value)


def with_profile(raw: dict[str, Any]) -> dict[str, Any]:
    """``params.yaml``'s mapping with the profile's ``runner`` merged over its own."""
    profile = read_profile()
    if not profile or not profile.runner:
        return raw
    return {**raw, "runner": {**(raw.get("runner") or {}), **profile.runner}}
