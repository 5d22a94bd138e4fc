"""The pipeline run's summary: stages run, each experiment's metrics and registry record."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tessera.tasks.evaluation.comparison import versus_line

HEADLINE = ("dice_mean", "accuracy", "balanced_accuracy", "silhouette", "nmi", "rec_psnr")
VERSUS = (*HEADLINE, "heldout_dice_mean")
"""The metrics compared with the best baseline in a summary: the headline and, where the
forest was scored on held-out scenes, the held-out Dice."""


def read_json_or_empty(path: Path) -> dict[str, Any]:
    """A JSON file as a dict; {} when it does not exist (yet)."""
    return json.loads(path.read_text()) if path.exists() else {}


def experiment_outputs(
    root: Path, eval_out: str, registry_out: str, experiment: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """An experiment's ``metrics.json`` and registry record ({} for what is not there yet)."""
    return (
        read_json_or_empty(root / eval_out / experiment / "metrics.json"),
        read_json_or_empty(root / registry_out / f"{experiment}.json"),
    )


def headline(metrics: dict[str, Any], digits: int = 4) -> str:
    """The headline metrics present, e.g. ``dice_mean 0.7618, silhouette 0.5434``; with a
    held-out score beside the split's: ``dice_mean 0.949 split, 0.871 held-out``."""
    parts = []
    for k in HEADLINE:
        if metrics.get(k) is None:
            continue
        part = f"{k} {metrics[k]:.{digits}g}"
        if metrics.get(held := f"heldout_{k}") is not None:
            part += f" split, {metrics[held]:.{digits}g} held-out"
        parts.append(part)
    return ", ".join(parts)


def version_label(record: dict[str, Any]) -> str:
    """``tessera-NAME vN`` of a registry record, or ``-``."""
    return f"{record['name']} v{record['version']}" if record else "-"


def run_summary(
    root: Path,
    eval_out: str,
    registry_out: str,
    experiments: list[str],
    ran: list[str],
    skipped: list[str],
    pushed: str | None = None,
) -> str:
    """Markdown: stages run, where DVC pushed them, each experiment's headline metrics, its
    registry version."""
    lines = ["# Tessera pipeline", "", f"Ran: {', '.join(ran) or 'nothing (all current)'}"]
    lines += [f"Current already: {', '.join(skipped) or 'none'}"]
    lines += [f"Pushed: {pushed or 'nothing (no default DVC remote, or nothing ran)'}", ""]
    lines += ["| experiment | metrics | versus baseline | registered | alias | reason | plots |"]
    lines += ["| --- | --- | --- | --- | --- | --- | --- |"]
    for exp in experiments:
        m, r = experiment_outputs(root, eval_out, registry_out, exp)
        moved = "register" in ran and r.get("registered") and r.get("alias") == "champion"
        alias = f"{r.get('alias', '-')}{' (moved)' if moved else ''}"
        versus = versus_line(m, VERSUS) or "-"
        cells = [exp, headline(m) or "-", versus, version_label(r), alias, r.get("reason", "-")]
        lines.append(f"| {' | '.join(cells)} | {eval_out}/{exp}/report.md |")
    return "\n".join(lines)
