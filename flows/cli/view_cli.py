"""``tessera view PATH``: the maps at PATH in the browser, served on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

VIEW_PORT = 8765


def view(
    path: Annotated[Path, typer.Argument(help="A class map, or a folder of them (predict's out).")],
    port: Annotated[int, typer.Option(help="The port on 127.0.0.1.")] = VIEW_PORT,
    access_log: Annotated[
        bool, typer.Option("--access-log", help="Print each request the viewer answers.")
    ] = False,
) -> None:
    """Serve the maps at PATH on 127.0.0.1: a COG over its scene on a web map, a NIfTI map
    over its volume in three orthogonal views. Ctrl-C stops it."""
    import uvicorn

    from tessera.tasks.prediction.map_viewer import build_app, check_scripts, find_maps

    check_scripts()
    maps = find_maps(path)
    base = f"http://127.0.0.1:{port}"
    typer.echo(f"Tessera viewer at {base}/ (Ctrl-C stops it)")
    for m in maps:
        typer.echo(f"  {m.path}: {m.url(base)}")
    level = "info" if access_log else "warning"
    uvicorn.run(build_app(maps), host="127.0.0.1", port=port, log_level=level,
                access_log=access_log)  # fmt: skip
