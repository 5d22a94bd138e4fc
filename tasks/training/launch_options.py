"""How a training is launched: on this node, across nodes, or as a Slurm job (read by the
config schema and the experiments' resolution, so this module imports nothing of the
project)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class SlurmParams(BaseModel):
    """How a training job is submitted to Slurm."""

    model_config = ConfigDict(extra="forbid")
    partition: str | None = Field(default=None, description="None: the cluster's default.")
    time_limit: str = Field(default="02:00:00", description="sbatch --time of the job.")
    requeue: bool = Field(default=True, description="Requeue the job when a node fails.")
    options: list[str] = Field(
        default_factory=list, description="More sbatch options, e.g. --gpus-per-node=4."
    )
    env: dict[str, str] = Field(
        default_factory=dict,
        description="Exported into the job, e.g. MASTER_ADDR where node names do not resolve.",
    )
    wait_s: float = Field(
        default=86400, gt=0, description="Bound on the wait for the job, queueing included."
    )


class LaunchLimits(BaseModel):
    """What params.yaml's ``runner`` and :class:`LaunchParams` share: the Slurm job, the
    restarts, and the bounds on waiting for peers and for the tracking server."""

    slurm: SlurmParams = Field(default_factory=SlurmParams)
    max_restarts: int = Field(
        default=0, ge=0, description="torchrun restarts after a rank dies; each resumes the run."
    )
    rdzv_timeout_s: int = Field(
        default=300, ge=10, description="How long a node waits for the others to join."
    )
    tracking_timeout_s: float = Field(
        default=30,
        gt=0,
        description="Bound on waiting for an MLflow tracking server (http): before the ranks "
        "start, and on each of their calls while they train (it sets their MLFLOW_HTTP_REQUEST_* "
        "retries: a server that is down fails the run within about this long).",
    )


class LaunchParams(LaunchLimits):
    """How ``tessera train`` starts the training processes and waits for them."""

    model_config = ConfigDict(extra="forbid")
    launcher: Literal["local", "slurm"] = Field(
        default="local", description="local: here (torchrun for several); slurm: one Slurm job."
    )
    devices: int = Field(default=1, ge=1, description="Processes (GPUs) per node.")
    num_nodes: int = Field(default=1, ge=1)
    resume: bool = Field(default=False, description="Continue from the last checkpoint.")
    rdzv_endpoint: str | None = Field(default=None, description="host:port, several nodes.")
