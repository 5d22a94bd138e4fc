"""The ``tessera`` command line: one command per stage."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from tessera.flows.cli.cluster_cli import cluster_app
from tessera.flows.cli.common import (
    BadOpt,
    RunnerOpt,
    SetOpt,
    UserError,
    load,
    options_of,
    run_stage,
    with_sections,
)
from tessera.flows.cli.pipeline_cli import run_pipeline, serve
from tessera.flows.cli.predict_cli import predict
from tessera.flows.cli.server_cli import prefect_home, server_app
from tessera.flows.cli.view_cli import view
from tessera.flows.settings.env import configure_environment
from tessera.tasks.base.startup import start_process

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Tessera: tiles satellite and medical imagery for deep learning.",
)

ParamsOpt = Annotated[Path, typer.Option("--params", help="The params file.")]


@app.command()
def samples(
    dest: Annotated[Path, typer.Option(help="Where to copy the data.")] = Path("data"),
    force: Annotated[
        bool, typer.Option(help="Replace files that differ from the samples.")
    ] = False,
) -> None:
    """Copy the real sample data (Landsat 8, Sentinel-2, MNI152, DICOM) into data/."""
    from tessera.tasks.sources.samples import cache_if_unchanged, copy_samples, sample_files

    written = copy_samples(dest, force)
    typer.echo(f"{len(sample_files())} sample files in {dest}/ ({len(written)} written)")
    dvc_file = dest.parent / f"{dest.name}.dvc"
    if dvc_file.exists() and (dest.parent / ".dvc").is_dir():
        problem = cache_if_unchanged(dvc_file)
        if problem:
            raise UserError(problem)
        typer.echo(f"{dvc_file}: unchanged; data cached by DVC")


@app.command()
def ingest(
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
    task_runner: RunnerOpt = None,
    on_bad_input: BadOpt = None,
) -> None:
    """Validate ingest.sources and write the catalogue (outputs/catalog.parquet)."""
    from tessera.flows.settings.schema import updated

    p = load(params, set_)
    with options_of("ingest", params):
        ingest_ = updated(p.ingest, on_bad_input=on_bad_input)
    p = with_sections(p, params, task_runner, ingest=ingest_)
    res = run_stage("ingest", p, params)
    typer.echo(
        f"catalogue: {res['catalog']} ({res['scenes']} scenes, {len(res['rejected'])} rejected)"
    )


@app.command()
def tile(  # noqa: PLR0913 - a typer command: one parameter per CLI option
    params: Annotated[
        Path | None,
        typer.Option("--params", help="The params file (default params.yaml; with --input: none)."),
    ] = None,
    set_: SetOpt = None,
    input_: Annotated[
        list[str] | None,
        typer.Option(
            "--input",
            help="Ad-hoc mode: a GeoTIFF, NIfTI or DICOM (file or series folder), a "
            "raster in S3 (s3://bucket/key, read by ranges), or a STAC Item or Collection "
            "(.json: a file, s3:// or https://).",
        ),
    ] = None,
    label: Annotated[str | None, typer.Option(help="Label mask for a single --input.")] = None,
    stack: Annotated[
        bool, typer.Option(help="Treat the --input GeoTIFFs as bands of one scene.")
    ] = False,
    out: Annotated[Path | None, typer.Option(help="Store directory.")] = None,
    size: Annotated[int | None, typer.Option(help="Tile size in pixels.")] = None,
    stride: Annotated[int | None, typer.Option(help="Stride (overlap = size - stride).")] = None,
    axis: Annotated[int | None, typer.Option(help="Volume slicing axis (2: axial).")] = None,
    min_valid_fraction: Annotated[
        float | None, typer.Option(help="Tiles with fewer valid pixels are dropped.")
    ] = None,
    on_bad_input: BadOpt = None,
    task_runner: RunnerOpt = None,
) -> None:
    """Tile the catalogue (params mode) or any files given with --input (ad-hoc mode)."""
    adhoc = bool(input_)
    if params is None and not adhoc:
        params = Path("params.yaml")
    p = load(params, set_)
    with options_of("tile", params):  # a new size brings its stride along
        tile_ = p.tile.with_changes(
            out=str(out) if out is not None else ("tiles" if adhoc else None),
            size=size,
            stride=stride,
            axis=axis,
            min_valid_fraction=min_valid_fraction,
            on_bad_input=on_bad_input,
        )
    p = with_sections(p, params, task_runner, tile=tile_)
    sources = None
    if adhoc:
        from tessera.tasks.sources.adhoc import adhoc_sources
        from tessera.tasks.sources.paths import as_path

        try:
            inputs = [as_path(i) for i in input_ or []]
            sources = adhoc_sources(inputs, as_path(label) if label else None, stack)
        except ValueError as exc:
            raise UserError(str(exc)) from None
    elif label or stack:
        raise UserError("--label and --stack need --input")
    res = run_stage("tile", p, params, sources=sources, base=str(Path.cwd()))
    typer.echo(
        f"tile store: {res['store']} ({res['tiles']} tiles from {res['scenes']} scenes, "
        f"{len(res['rejected'])} rejected)"
    )


@app.command()
def train(
    experiment: Annotated[str, typer.Option(help="An experiment named in params.yaml.")],
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
    devices: Annotated[int | None, typer.Option(help="Processes (GPUs) per node.")] = None,
    num_nodes: Annotated[int | None, typer.Option(help="Nodes (torchrun rendezvous).")] = None,
    resume: Annotated[bool, typer.Option(help="Continue from the last checkpoint.")] = False,
) -> None:
    """Train one experiment; several devices or nodes run under torchrun (DDP)."""
    p = load(params, set_)
    res = run_stage(
        "train",
        p,
        params,
        experiment=[experiment],
        devices=devices,
        num_nodes=num_nodes,
        resume=resume,
    )
    test = ", ".join(
        f"{k}={v:.4g}" for k, v in sorted(res["test_metrics"].items()) if v is not None
    )
    where = [f"Slurm job {res['slurm_job']}"] if res.get("slurm_job") else []
    if res.get("restarts"):
        where.append(f"restarted {res['restarts']}x from its last checkpoint")
    if res.get("mlflow_run_id"):
        where.append(f"MLflow run {res['mlflow_run_id']} on {res['tracking_uri']}")
    typer.echo(
        f"trained {experiment}: world size {res['world_size']}, {res['epochs']} epochs, "
        f"best val_loss {res['best_val_loss'] or float('nan'):.4g} -> {res['out_dir']}"
        + (f"; {test}" if test else "")
        + (f" ({'; '.join(where)})" if where else "")
    )


@app.command()
def evaluate(
    experiment: Annotated[str, typer.Option(help="An experiment named in params.yaml.")],
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
    checkpoint: Annotated[
        Path | None, typer.Option(help="A checkpoint; default: the experiment's best.ckpt.")
    ] = None,
) -> None:
    """Evaluate a trained experiment: metrics, latent clustering, plots, cluster maps, report."""
    p = load(params, set_)
    ckpt = str(checkpoint) if checkpoint is not None else None
    res = run_stage("evaluate", p, params, experiment=[experiment], checkpoint=ckpt)
    m = res["metrics"]
    keys = ("dice_mean", "accuracy", "silhouette", "nmi", "linear_probe_accuracy", "rec_psnr")
    shown = ", ".join(f"{k}={m[k]:.4g}" for k in keys if m.get(k) is not None)
    typer.echo(
        f"evaluated {experiment}: {int(m['n_tiles'] or 0)} tiles, {len(res['plots'])} plots, "
        f"{len(res['maps'])} cluster maps -> {res['out']}" + (f"; {shown}" if shown else "")
    )


@app.command()
def register(
    experiment: Annotated[
        list[str] | None, typer.Option(help="Experiments to register (default: all).")
    ] = None,
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
) -> None:
    """Log evaluated models to MLflow, register them, and move champion/challenger aliases."""
    p = load(params, set_)
    for r in run_stage("register", p, params, experiment=list(experiment or [])):
        done = "registered" if r["registered"] else "unchanged"
        typer.echo(
            f"{done} {r['name']} v{r['version']} as {r['alias']} "
            f"({r['metric']} {r['value']}): {r['reason']} [on {r['tracking_uri']}]"
        )


app.command()(predict)
app.command()(view)
app.command(name="run")(run_pipeline)
app.command()(serve)
app.add_typer(server_app, name="server")
app.add_typer(cluster_app, name="cluster")


@app.command()
def summary(
    params: ParamsOpt = Path("params.yaml"),
    tiles: Annotated[Path, typer.Option(help="The tile store described.")] = Path("outputs/tiles"),
) -> None:
    """Print what the pipeline has produced: tiles, metrics, registered models, where things are."""
    from rich.console import Console

    from tessera.flows.cli.summary_cli import (
        experiments_table,
        predictions_table,
        store_table,
        ui_hints,
    )
    from tessera.flows.local_server.api import running_url

    p = load(params, None)
    console = Console(width=max(Console().width, 160))
    console.print(store_table(tiles))
    console.print(experiments_table(p))
    console.print(predictions_table(Path(p.predict.out)))
    console.print(ui_hints(running_url(prefect_home())), highlight=False)


def run(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit status; errors become one line, never a traceback."""
    try:  # typer >= 0.17 vendors click
        from typer._click import exceptions as click_exc
    except ImportError:  # pragma: no cover
        from click import exceptions as click_exc  # type: ignore[no-redef]

    from tessera.tasks.base.error_policy import debugging, expected, user_message

    try:
        configure_environment()
        result = app(args=argv, standalone_mode=False, prog_name="tessera")
        return result if isinstance(result, int) else 0
    except typer.Exit as exc:
        return exc.exit_code
    except click_exc.ClickException as exc:
        if exc.format_message():
            typer.echo(f"tessera: {exc.format_message()}", err=True)
        return exc.exit_code
    except Exception as exc:  # one line per problem; a bug's traceback with TESSERA_DEBUG=1
        if debugging() and not expected(exc):
            raise
        return _report(user_message(exc))


def _report(msg: str, code: int = 1) -> int:
    for line in msg.splitlines() or [msg]:
        typer.echo(f"tessera: {line}", err=True)
    return code


def main() -> None:
    """Console entry point.

    Ends with ``os._exit`` once every exit hook has run (threads joined, Prefect's event
    queues drained, atexit handlers called, output flushed): tearing down the thousands of
    imported modules adds about half a second to every command and writes nothing.
    """
    start_process()
    code = run()
    try:
        import atexit
        import threading

        threading._shutdown()  # type: ignore[attr-defined]  # joins threads, drains services
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    except Exception:  # pragma: no cover - an exit hook failed: let Python finish normally
        sys.exit(code)
    os._exit(code)
