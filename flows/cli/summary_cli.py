"""``tessera summary``: what the pipeline has produced, as tables for the terminal."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tessera.flows.settings.schema import TesseraParams
from tessera.tasks.evaluation.comparison import versus_line
from tessera.tasks.pipeline.run_report import (
    VERSUS,
    experiment_outputs,
    headline,
    read_json_or_empty,
    version_label,
)
from tessera.tasks.store.format import INFO_FILE


def store_table(tiles: Path) -> Any:
    """One row per source of the tile store."""
    from rich.table import Table

    info = read_json_or_empty(tiles / INFO_FILE)
    t = Table(title=f"Tile store {tiles} ({info.get('n_tiles', 0)} tiles)")
    for col in ("source", "kind", "bands", "dtype", "classes", "scenes"):
        t.add_column(col)
    for name, s in info.get("sources", {}).items():
        classes = ", ".join(s["class_names"]) or "-"
        t.add_row(name, s["kind"], str(len(s["bands"])), s["dtype"], classes, str(len(s["scenes"])))
    return t


def experiments_table(p: TesseraParams) -> Any:
    """One row per experiment in two tables (its headline metrics beside its best baselines;
    its registered version, alias and champion), then where its report and maps are."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    scores = Table(title="Experiments: model versus baseline")
    registry = Table(title="Experiments: registry")
    for col in ("experiment", "metrics", "versus baseline"):
        scores.add_column(col, overflow="fold")
    for col in ("experiment", "registered", "alias", "champion"):
        registry.add_column(col, no_wrap=True)
    where = ["Reports and maps:"]
    for exp in sorted(p.experiments):
        out = Path(p.evaluate.out) / exp
        m, r = experiment_outputs(Path("."), p.evaluate.out, p.registry.out, exp)
        scores.add_row(exp, headline(m, digits=3) or "not evaluated", versus_line(m, VERSUS) or "-")
        champion = f"v{r['champion_version']}" if r.get("champion_version") else "-"
        registry.add_row(exp, version_label(r), r.get("alias", "-"), champion)
        maps = sorted(x.name for x in (out / "maps").glob("*")) if (out / "maps").is_dir() else []
        where += [f"  {out}/report.md", *(f"  {out}/maps/{x}" for x in maps)]
    return Group(scores, registry, Text("\n".join(where), no_wrap=True))


def predictions_table(root: Path) -> Any:
    """One row per map ``tessera predict`` wrote under ``root``: its model, version and input."""
    from rich.table import Table

    from tessera.flows.cli.view_cli import VIEW_PORT
    from tessera.tasks.prediction.apply import MAP_PATTERNS
    from tessera.tasks.prediction.map_lineage import read_lineage
    from tessera.tasks.prediction.map_viewer import map_keys

    t = Table(title=f"Predictions under {root} (`tessera view {root}` serves them)")
    for col in ("map", "model", "version", "input", "viewer"):
        t.add_column(col, overflow="fold")
    maps = sorted({p for pattern in MAP_PATTERNS for p in root.rglob(pattern)})
    keys = map_keys(root) if root.is_dir() else {}
    for path in maps:
        lineage = read_lineage(path)
        if lineage:
            key = keys.get(path)
            t.add_row(
                str(path),
                lineage["tessera_model"],
                lineage["tessera_model_version"],
                lineage.get("tessera_input", "-"),
                f"http://127.0.0.1:{VIEW_PORT}/map/{key}" if key else "-",
            )
    if not t.row_count:
        t.add_row(f"none yet: `tessera predict` writes them to {root}", "-", "-", "-", "-")
    return t


def ui_hints(prefect_url: str | None) -> str:
    """Where to look: the MLflow UI command, the local Prefect server's UI, the PNGs."""
    prefect = (
        f"{prefect_url.removesuffix('/api')} (the local server; `tessera server stop` stops it)"
        if prefect_url
        else "not running; `.venv/bin/tessera server start` starts it (and prints its address)"
    )
    return (
        "MLflow UI:  .venv/bin/mlflow ui --backend-store-uri sqlite:///mlflow.db "
        "--host 127.0.0.1 --port 5000\n"
        "            then http://127.0.0.1:5000 (runs, plots, registry: "
        "tessera-<experiment>@champion)\n"
        f"Prefect UI: {prefect}\n"
        "PNG plots:  outputs/eval/<experiment>/plots/  (and outputs/models/<experiment>/plots/)"
    )
