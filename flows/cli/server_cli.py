"""``tessera server start|stop|status``: the local Prefect server that commands reuse."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

server_app = typer.Typer(
    no_args_is_help=True, help="The local Prefect server (and UI) that commands reuse."
)


def prefect_home() -> Path:
    """This command's Prefect home (set by ``tessera.flows.settings.env.configure_environment``)."""
    return Path(os.environ["PREFECT_HOME"]).absolute()


@server_app.command("start")
def server_start() -> None:
    """Start the local Prefect server now (commands otherwise start it on first use)."""
    from tessera.flows.local_server.api import idle_minutes, running_url, start

    url = running_url(prefect_home()) or start(prefect_home(), idle_minutes())
    typer.echo(f"Prefect API at {url}; UI at {url.removesuffix('/api')}")


@server_app.command("stop")
def server_stop(
    all_servers: Annotated[
        bool,
        typer.Option("--all", help="Stop every server Tessera started for you (each project's)."),
    ] = False,
) -> None:
    """Stop the local Prefect server of this project (or of this user, outside a project)."""
    if all_servers:
        _stop_all()
        return
    from tessera.flows.local_server.api import stop

    pid = stop(prefect_home())
    typer.echo(f"stopped the local Prefect server (pid {pid})" if pid else "no server running")


def _stop_all() -> None:
    from tessera.flows.local_server.server_records import recorded, stop_server

    records = recorded()
    if not records:
        typer.echo("no server recorded")
    for rec in records:
        if stop_server(rec):
            typer.echo(f"stopped {rec.home}: {rec.url} (pid {rec.pid})")
        else:
            typer.echo(f"stale record removed: {rec.home} (pid {rec.pid} is not its server)")


@server_app.command("status")
def server_status() -> None:
    """Say whether this project's server is up, where its data lives, and list every server
    Tessera started for you (``*``: this project's) with its uptime and idle time."""
    from tessera.flows.local_server.api import mode, running_url
    from tessera.flows.local_server.server_records import duration, forget, recorded, server_state

    home = prefect_home()
    url = running_url(home)
    typer.echo(f"Prefect home: {home}; API mode: {mode()}")
    typer.echo(f"running at {url}" if url else "not running (the next command starts it)")
    states = [server_state(rec) for rec in recorded()]
    live = [s for s in states if s.state != "stale"]
    typer.echo(f"Tessera's local Prefect servers of this user: {len(live)}")
    for s in live:
        rec = s.record
        mark = "*" if Path(rec.home) == home else " "
        use = "in use" if s.state == "in use" else f"idle {duration(s.idle_s)}"
        typer.echo(
            f"{mark} {rec.home}  {rec.url}  pid {rec.pid}  up {duration(s.uptime_s)}  {use}"
            f" (stops after {rec.idle_minutes:g} idle min)"
        )
    for s in states:
        if s.state == "stale":
            forget(s.record)
            typer.echo(
                f"stale record removed: {s.record.home} (pid {s.record.pid} is not its server)"
            )
