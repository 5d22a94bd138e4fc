"""``tessera server start|stop|status``: the local Prefect server that commands reuse."""

from __future__ import annotations

import os
from pathlib import Path

import typer

server_app = typer.Typer(
    no_args_is_help=True, help="The local Prefect server (and UI) that commands reuse."
)


def prefect_home() -> Path:
    """This command's Prefect home (set by ``tessera.flows.env.configure_environment``)."""
    return Path(os.environ["PREFECT_HOME"])


@server_app.command("start")
def server_start() -> None:
    """Start the local Prefect server now (commands otherwise start it on first use)."""
    from tessera.flows.local_api import idle_minutes, running_url, start

    url = running_url(prefect_home()) or start(prefect_home(), idle_minutes())
    typer.echo(f"Prefect API at {url}; UI at {url.removesuffix('/api')}")


@server_app.command("stop")
def server_stop() -> None:
    """Stop the local Prefect server of this project (or of this user, outside a project)."""
    from tessera.flows.local_api import stop

    pid = stop(prefect_home())
    typer.echo(f"stopped the local Prefect server (pid {pid})" if pid else "no server running")


@server_app.command("status")
def server_status() -> None:
    """Say whether the local Prefect server is up, where, and where its data lives."""
    from tessera.flows.local_api import mode, running_url

    url = running_url(prefect_home())
    typer.echo(f"Prefect home: {prefect_home()}; API mode: {mode()}")
    typer.echo(f"running at {url}" if url else "not running (the next command starts it)")
