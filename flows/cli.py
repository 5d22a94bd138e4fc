"""The ``tessera`` command line: one command per stage."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from tessera.flows.env import configure_environment
from tessera.flows.server_cli import prefect_home, server_app

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Tessera: tiles satellite and medical imagery for deep learning.",
)

ParamsOpt = Annotated[Path, typer.Option("--params", help="The params file.")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Override a key: a.b=c.")]
RunnerOpt = Annotated[str | None, typer.Option("--task-runner", help="threads or dask.")]
BadOpt = Annotated[str | None, typer.Option("--on-bad-input", help="fail or skip.")]


class UserError(Exception):
    """A problem to report in one line, without a traceback."""


def _validation_message(exc: Any) -> str:
    """A pydantic ValidationError as ``loc: msg; loc: msg``."""
    return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())


def _load(params: Path | None, overrides: list[str] | None, **sections: dict[str, Any]) -> Any:
    """Validate ``params`` (None: the defaults) with the ``--set`` overrides, then with the
    typed options of the command (``sections``: ``{"tile": {"size": 32}}``; None values are
    not given); problems in one line."""
    from pydantic import ValidationError

    from tessera.flows.config import load_params, updated

    where = str(params) if params is not None else "options"
    try:
        p = load_params(params, list(overrides or []))
        return updated(p, **{k: updated(getattr(p, k), **v) for k, v in sections.items()})
    except ValidationError as exc:
        raise UserError(f"{where}: invalid config: {_validation_message(exc)}") from None
    except OSError as exc:
        from tessera.tasks.store.errors import one_line

        raise UserError(one_line(exc)) from None
    except ValueError as exc:
        raise UserError(f"{where}: {exc}") from None


def _run(flow_obj: Any, **kwargs: Any) -> Any:
    """Run a flow; a failed state becomes a one-line error."""
    from tessera.flows.local_api import prefect_api

    with prefect_api():
        state = flow_obj(**kwargs, return_state=True)
    if state.is_failed():
        raise UserError(state.message or "flow run failed")
    return state.result()


def _run_stage(name: str, p: Any, params: Path | None, **options: Any) -> Any:
    """Run stage ``name`` through the stage table; config problems name the experiment."""
    from pydantic import ValidationError

    from tessera.flows.stages import StageOptions, stage_call

    opts = StageOptions(**options)
    try:
        flow_obj, kwargs = stage_call(name, p, opts)
    except ValidationError as exc:
        msg = _validation_message(exc)
        raise UserError(f"{params}: experiments.{','.join(opts.experiment)}: {msg}") from None
    except ValueError as exc:
        raise UserError(f"{params}: {exc}") from None
    return _run(flow_obj, **kwargs)


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
    p = _load(params, set_, ingest={"on_bad_input": on_bad_input}, runner={"kind": task_runner})
    res = _run_stage("ingest", p, params)
    typer.echo(
        f"catalogue: {res['catalog']} ({res['scenes']} scenes, {len(res['rejected'])} rejected)"
    )


@app.command()
def tile(
    params: Annotated[
        Path | None,
        typer.Option("--params", help="The params file (default params.yaml; with --input: none)."),
    ] = None,
    set_: SetOpt = None,
    input_: Annotated[
        list[Path] | None,
        typer.Option(
            "--input", help="Ad-hoc mode: a GeoTIFF, NIfTI or DICOM (file or series folder)."
        ),
    ] = None,
    label: Annotated[Path | None, typer.Option(help="Label mask for a single --input.")] = None,
    stack: Annotated[
        bool, typer.Option(help="Treat the --input GeoTIFFs as bands of one scene.")
    ] = False,
    out: Annotated[Path | None, typer.Option(help="Store directory.")] = None,
    size: Annotated[int | None, typer.Option(help="Tile size in pixels.")] = None,
    stride: Annotated[int | None, typer.Option(help="Stride (overlap = size - stride).")] = None,
    axis: Annotated[int | None, typer.Option(help="Volume slicing axis (2: axial).")] = None,
    min_valid_fraction: Annotated[float | None, typer.Option()] = None,
    on_bad_input: BadOpt = None,
    task_runner: RunnerOpt = None,
) -> None:
    """Tile the catalogue (params mode) or any files given with --input (ad-hoc mode)."""
    adhoc = bool(input_)
    if params is None and not adhoc:
        params = Path("params.yaml")
    geometry = {"size": size, "stride": stride, "axis": axis}
    p = _load(
        params,
        set_,
        tile={
            "out": str(out) if out is not None else ("tiles" if adhoc else None),
            "min_valid_fraction": min_valid_fraction,
            "on_bad_input": on_bad_input,
        },
        runner={"kind": task_runner},
    )
    try:
        p = p.model_copy(update={"tile": p.tile.with_changes(**geometry)})
    except ValueError as exc:  # a pydantic ValidationError too
        raise UserError(f"{params or 'options'}: invalid config: {exc}".splitlines()[0]) from None
    sources = None
    if adhoc:
        from tessera.tasks.sources.adhoc import adhoc_sources

        try:
            sources = adhoc_sources(list(input_ or []), label, stack)
        except ValueError as exc:
            raise UserError(str(exc)) from None
    elif label or stack:
        raise UserError("--label and --stack need --input")
    res = _run_stage("tile", p, params, sources=sources, base=str(Path.cwd()))
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
    p = _load(params, set_)
    res = _run_stage(
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
    typer.echo(
        f"trained {experiment}: world size {res['world_size']}, {res['epochs']} epochs, "
        f"best val_loss {res['best_val_loss'] or float('nan'):.4g} -> {res['out_dir']}"
        + (f"; {test}" if test else "")
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
    p = _load(params, set_)
    ckpt = str(checkpoint) if checkpoint is not None else None
    res = _run_stage("evaluate", p, params, experiment=[experiment], checkpoint=ckpt)
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
    p = _load(params, set_)
    for r in _run_stage("register", p, params, experiment=list(experiment or [])):
        done = "registered" if r["registered"] else "unchanged"
        typer.echo(
            f"{done} {r['name']} v{r['version']} as {r['alias']} "
            f"({r['metric']} {r['value']}): {r['reason']}"
        )


ForceOpt = Annotated[
    list[str] | None,
    typer.Option("--force", help="Run these stages (name or prefix, e.g. train) even if current."),
]


@app.command(name="run")
def run_pipeline(
    force: ForceOpt = None,
    push: Annotated[bool, typer.Option(help="dvc push to the default remote.")] = True,
) -> None:
    """Run every out-of-date dvc.yaml stage as a Prefect subflow and commit it to dvc.lock.

    It reads params.yaml, as DVC does (no --set: the outputs must match what DVC records).
    """
    from tessera.flows.pipeline import PARAMS_FILE, PipelineParams, pipeline_flow

    p = _load(Path(PARAMS_FILE), None)  # a bad params.yaml fails here, in one line
    fp = PipelineParams(root=".", force=list(force or []), push=push)
    from tessera.flows.runner import make_task_runner

    f = pipeline_flow.with_options(task_runner=make_task_runner(p.runner))
    typer.echo(_run(f, params=fp)["summary"])


@app.command()
def serve(
    cron: Annotated[str, typer.Option(help="Schedule (cron, in --timezone).")] = "0 2 * * *",
    timezone: Annotated[str, typer.Option(help="IANA time zone of the schedule.")] = "UTC",
    name: Annotated[str, typer.Option(help="Deployment name.")] = "tessera-serve",
    force: ForceOpt = None,
) -> None:
    """Serve the pipeline flow on a schedule from this process (no work pool needed)."""
    from prefect.schedules import Cron

    from tessera.flows.pipeline import PipelineParams, pipeline_flow

    fp = PipelineParams(root=str(Path.cwd()), force=list(force or []))
    from tessera.flows.local_api import prefect_api

    with prefect_api():
        typer.echo(f"serving tessera-pipeline/{name}: cron {cron!r} ({timezone}); Ctrl-C stops")
        pipeline_flow.serve(
            name=name,
            schedule=Cron(cron, timezone=timezone),
            parameters={"params": fp.model_dump()},
        )


app.add_typer(server_app, name="server")


@app.command()
def summary(params: ParamsOpt = Path("params.yaml"), tiles: Path = Path("outputs/tiles")) -> None:
    """Print what the pipeline has produced: tiles, metrics, registered models, where things are."""
    from rich.console import Console

    from tessera.flows.local_api import running_url
    from tessera.flows.summary import experiments_table, store_table, ui_hints

    p = _load(params, None)
    console = Console(width=max(Console().width, 160))
    console.print(store_table(tiles))
    console.print(experiments_table(p))
    console.print(ui_hints(running_url(prefect_home())), highlight=False)


def run(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit status; errors become one line, never a traceback."""
    try:  # typer >= 0.17 vendors click
        from typer._click import exceptions as click_exc
    except ImportError:  # pragma: no cover
        from click import exceptions as click_exc  # type: ignore[no-redef]

    configure_environment()
    from tessera.flows.local_api import ServerError
    from tessera.tasks.sources.errors import BadInputError
    from tessera.tasks.store.outputs import OutputRefusedError
    from tessera.tasks.store.writer import StoreLockedError

    try:
        result = app(args=argv, standalone_mode=False, prog_name="tessera")
        return result if isinstance(result, int) else 0
    except typer.Exit as exc:
        return exc.exit_code
    except click_exc.ClickException as exc:
        if exc.format_message():
            typer.echo(f"tessera: {exc.format_message()}", err=True)
        return exc.exit_code
    except (UserError, BadInputError, StoreLockedError, OutputRefusedError, ServerError) as exc:
        return _report(str(exc))
    except OSError as exc:  # a path the user gave (or a full disk): named in one line
        from tessera.tasks.store.errors import one_line

        return _report(one_line(exc))
    except Exception as exc:  # a bug: still one line; TESSERA_DEBUG=1 shows the traceback
        if os.environ.get("TESSERA_DEBUG"):
            raise
        return _report(f"internal error: {type(exc).__name__}: {exc} (TESSERA_DEBUG=1 for details)")


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


if __name__ == "__main__":
    main()
