"""The pipeline run's summary: stages run, each experiment's metrics and registry record."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HEADLINE = ("dice_mean", "accuracy", "balanced_accuracy", "silhouette", "nmi", "rec_psnr")


def read_json_or_empty(path: Path) -> dict[str, Any]:
    """A JSON file as a dict; {} when it does not exist (yet)."""
    return json.loads(path.read_text()) if path.exists() else {}


def run_summary(
    root: Path,
    eval_out: str,
    registry_out: str,
    experiments: list[str],
    ran: list[str],
    skipped: list[str],
) -> str:
    """Markdown: stages run, each experiment's headline metrics, its registry version."""
    lines = ["# Tessera pipeline", "", f"Ran: {', '.join(ran) or 'nothing (all current)'}"]
    lines += [f"Current already: {', '.join(skipped) or 'none'}", ""]
    lines += ["| experiment | metrics | registered | alias | reason | plots |"]
    lines += ["| --- | --- | --- | --- | --- | --- |"]
    for exp in experiments:
        m = read_json_or_empty(root / eval_out / exp / "metrics.json")
        r = read_json_or_empty(root / registry_out / f"{exp}.json")
        shown = ", ".join(f"{k} {m[k]:.4g}" for k in HEADLINE if m.get(k) is not None)
        moved = "register" in ran and r.get("registered") and r.get("alias") == "champion"
        alias = f"{r.get('alias', '-')}{' (moved)' if moved else ''}"
        version = f"{r['name']} v{r['version']}" if r else "-"
        plots = f"{eval_out}/{exp}/report.md"
        lines.append(
            f"| {exp} | {shown or '-'} | {version} | {alias} | {r.get('reason', '-')} | {plots} |"
        )
    return "\n".join(lines)
