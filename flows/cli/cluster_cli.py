"""``tessera cluster up|down|status|env``: every engine Tessera runs on at scale, started on
127.0.0.1 by one command (PostgreSQL, S3, the MLflow and Prefect servers, Dask, Slurm)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

cluster_app = typer.Typer(
    no_args_is_help=True,
    help="A local cluster: PostgreSQL, S3 (moto), MLflow and Prefect servers, Dask, Slurm.",
)
FolderOpt = Annotated[
    Path, typer.Option("--dir", help="Where the cluster keeps its data, logs and record.")
]
DEFAULT_DIR = Path(".tessera-cluster")


@cluster_app.command("up")
def cluster_up(
    folder: FolderOpt = DEFAULT_DIR,
    dask: Annotated[
        str, typer.Option(help="workers: a scheduler and two workers; slurm: workers as jobs.")
    ] = "workers",
) -> None:
    """Start the cluster; write its client environment (env.sh) and Tessera profile."""
    from tessera.tasks.cluster.cluster import PROFILE_FILE, describe, up

    if dask not in ("workers", "slurm"):
        raise typer.BadParameter("--dask: workers or slurm")
    t0 = time.monotonic()
    state = up(folder, Path.cwd(), dask, lambda line: typer.echo(line, err=True))  # type: ignore[arg-type]
    typer.echo(describe(state))
    typer.echo(f"up in {time.monotonic() - t0:.1f} s; use it with:")
    typer.echo(f"  export TESSERA_PROFILE={(folder / PROFILE_FILE).resolve()}")


@cluster_app.command("down")
def cluster_down(folder: FolderOpt = DEFAULT_DIR) -> None:
    """Stop what ``up`` started (by PID), cancelling Slurm's jobs first."""
    from tessera.tasks.cluster.cluster import down

    stopped = down(folder)
    typer.echo(f"stopped {', '.join(stopped)}" if stopped else f"{folder}: no cluster to stop")


@cluster_app.command("status")
def cluster_status(folder: FolderOpt = DEFAULT_DIR) -> None:
    """Each engine the cluster started, and whether it still runs."""
    from tessera.tasks.cluster.cluster import status

    states = status(folder)
    if not states:
        typer.echo(f"{folder}: no cluster")
        raise typer.Exit(1)
    for name, alive in states.items():
        typer.echo(f"{name:16} {'running' if alive else 'stopped'}")
    if not all(states.values()):
        raise typer.Exit(1)


@cluster_app.command("env")
def cluster_env(folder: FolderOpt = DEFAULT_DIR) -> None:
    """The variables a client needs, as shell exports: ``eval "$(tessera cluster env)"``."""
    from tessera.tasks.cluster.cluster import ENV_FILE, PROFILE_FILE, read_state

    if read_state(folder.resolve()) is None:
        raise typer.BadParameter(f"{folder}: no cluster (tessera cluster up)", param_hint="--dir")
    typer.echo((folder / ENV_FILE).read_text(), nl=False)
    typer.echo(f"export TESSERA_PROFILE={(folder / PROFILE_FILE).resolve()}")
