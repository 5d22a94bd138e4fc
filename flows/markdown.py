"""What flows show in the Prefect UI: Markdown artifacts of their results."""

from __future__ import annotations

import re
from typing import Any

from tessera.tasks.sources.records import SceneRecord
from tessera.tasks.store.format import StoreInfo


def artifact_key(prefix: str, name: str) -> str:
    """A Prefect artifact key (lowercase letters, digits and dashes only)."""
    return re.sub(r"[^a-z0-9-]", "-", f"{prefix}-{name}".lower())


def summary_markdown(summary: dict[str, Any]) -> str:
    """The run's headline figures as a Markdown table."""
    rows = [
        ("model", summary["model_type"]),
        ("world size", summary["world_size"]),
        ("epochs / steps", f"{summary['epochs']} / {summary['steps']}"),
        ("best val loss", summary["best_val_loss"]),
        ("best checkpoint", summary["best_checkpoint"]),
        ("wall time (s)", summary["wall_time_s"]),
    ]
    rows += [(k, v) for k, v in sorted(summary.get("test_metrics", {}).items())]
    lines = ["| | |", "| --- | --- |"] + [f"| {k} | {v} |" for k, v in rows]
    return f"# Training: {summary['experiment']}\n\n" + "\n".join(lines)


def decisions_markdown(records: list[dict[str, Any]]) -> str:
    """The registered versions, their aliases and the gate's reasons."""
    lines = ["# Registry", "", "| model | version | alias | metric | value | reason |"]
    lines.append("| --- | --- | --- | --- | --- | --- |")
    for r in records:
        lines.append(
            f"| {r['name']} | {r['version']} | {r['alias']} | {r['metric']} | "
            f"{r['value']} | {r['reason']} |"
        )
    return "\n".join(lines)


def ingest_markdown(records: list[SceneRecord], rejected: list[dict[str, str]]) -> str:
    """Markdown summary of a catalogue."""
    lines = [
        "# Tessera ingest",
        "",
        f"{len(records)} scenes, {len(rejected)} rejected.",
        "",
        "| scene | kind | shape | dtype | bands | resampled | label | valid |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        lines.append(
            f"| {r.scene_id} | {r.kind} | {'×'.join(map(str, r.shape))} | {r.dtype} | "
            f"{len(r.band_names)} | {', '.join(r.resampled_bands) or '-'} | "
            f"{r.label_kind or '-'} | {r.valid_fraction:.1%} |"
        )
    return "\n".join(lines + rejected_markdown(rejected))


def rejected_markdown(rejected: list[dict[str, str]]) -> list[str]:
    """Markdown lines listing rejected inputs (none when there are none)."""
    if not rejected:
        return []
    return ["", "## Rejected", ""] + [f"- `{x['path']}`: {x['reason']}" for x in rejected]


def tile_markdown(info: StoreInfo, n_tiles: int, rejected: list[dict[str, str]]) -> str:
    """Markdown summary of a store."""
    lines = [
        "# Tessera tile store",
        "",
        f"{n_tiles} tiles; {len(rejected)} inputs rejected.",
        "",
        "| scene | grid tiles | kept | dropped (border) | dropped (invalid) |",
        "|---|---|---|---|---|",
    ]
    for sid, c in info.counts.items():
        lines.append(
            f"| {sid} | {c['total']} | {c['kept']} | {c['dropped_border']} | "
            f"{c['dropped_invalid']} |"
        )
    lines += [
        "",
        "| source | band | mean | std | min | max | p2 | p98 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for src, s in info.sources.items():
        for band, st in s.stats.items():
            lines.append(
                f"| {src} | {band} | {st['mean']:.4g} | {st['std']:.4g} | "
                f"{st['min']:.4g} | {st['max']:.4g} | {st['p2']:.4g} | {st['p98']:.4g} |"
            )
    return "\n".join(lines + rejected_markdown(rejected))


def predictions_markdown(summary: dict[str, Any]) -> str:
    """The maps a prediction wrote and the scenes it skipped."""
    lines = [
        f"# Predictions: {summary['model']} {summary['version']}",
        "",
        f"{len(summary['maps'])} maps written to `{summary['out']}`, "
        f"{len(summary['skipped'])} scenes already mapped by this version.",
        "",
    ]
    lines += [f"- `{m}`" for m in summary["maps"]]
    return "\n".join(lines + rejected_markdown(summary["rejected"]))
