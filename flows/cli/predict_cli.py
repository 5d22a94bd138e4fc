"""``tessera predict``: the command line of the predict flow."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

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


def predict(  # noqa: PLR0913 - a typer command: one parameter per CLI option
    model: Annotated[
        str | None,
        typer.Option(
            help="models:/NAME@ALIAS, models:/NAME/VERSION, an experiment, a checkpoint, "
            "or a registered model's STAC MLM Item (.json)."
        ),
    ] = None,
    input_: Annotated[
        list[str] | None,
        typer.Option(
            "--input",
            help="A GeoTIFF, NIfTI or DICOM (file or series folder), a raster in S3 "
            "(s3://bucket/key, read by ranges), or a STAC Item or Collection (.json: a "
            "file, s3:// or https://).",
        ),
    ] = None,
    source: Annotated[
        list[str] | None, typer.Option(help="A source of ingest.sources in params.yaml.")
    ] = None,
    experiment: Annotated[
        str | None,
        typer.Option(help="Its best checkpoint on its own sources, into <out>/<experiment>."),
    ] = None,
    stack: Annotated[
        bool, typer.Option(help="The --input GeoTIFFs are bands of one scene.")
    ] = False,
    out: Annotated[Path | None, typer.Option(help="Folder of the maps.")] = None,
    overlap: Annotated[float | None, typer.Option(help="Share of the window overlapped.")] = None,
    blend: Annotated[str | None, typer.Option(help="gaussian or constant.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Windows per forward pass.")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu or cuda.")] = None,
    probabilities: Annotated[
        bool | None, typer.Option("--probabilities", help="Also one uint8 band per class.")
    ] = None,
    reconstruction: Annotated[
        bool | None,
        typer.Option(
            "--reconstruction",
            help="seg_ae: also the reconstruction (source units) and an anomaly map.",
        ),
    ] = None,
    on_bad_input: BadOpt = None,
    force: Annotated[
        bool | None, typer.Option("--force", help="Redo maps this model version made.")
    ] = None,
    params: Annotated[
        Path | None,
        typer.Option("--params", help="The params file (default: params.yaml when present)."),
    ] = None,
    set_: SetOpt = None,
    task_runner: RunnerOpt = None,
) -> None:
    """Apply a model to whole scenes and volumes: class maps as COG or NIfTI on the input's grid."""
    if params is None and Path("params.yaml").is_file():
        params = Path("params.yaml")
    from tessera.flows.settings.schema import updated

    p = load(params, set_)
    with options_of("predict", params):
        options = updated(
            p.predict,
            out=str(out) if out is not None else None,
            overlap=overlap,
            blend=blend,
            batch_size=batch_size,
            device=device,
            probabilities=probabilities,
            reconstruction=reconstruction,
            on_bad_input=on_bad_input,
            force=force,
        )
    p = with_sections(p, params, task_runner, predict=options)
    sources = None
    if input_:
        from tessera.tasks.sources.adhoc import adhoc_sources
        from tessera.tasks.sources.paths import as_path

        try:
            sources = adhoc_sources([as_path(i) for i in input_], None, stack)
        except ValueError as exc:
            raise UserError(str(exc)) from None
    elif stack:
        raise UserError("--stack needs --input")
    res = run_stage(
        "predict",
        p,
        params,
        model=model,
        experiment=[experiment] if experiment else [],
        sources=sources,
        source_names=list(source or []),
        base=str(Path.cwd()),
    )
    for path in res["maps"]:
        typer.echo(f"wrote {path}")
    typer.echo(
        f"predicted with {res['model']} {res['version']}: {len(res['maps'])} maps, "
        f"{len(res['skipped'])} scenes already mapped by this version (--force redoes them), "
        f"{len(res['rejected'])} rejected -> {res['out']}"
    )
    if res.get("stac"):
        typer.echo(f"STAC catalog of the maps: {res['stac']}")
