"""Evaluation outputs: tables for ``dvc plots``, PNGs, cluster maps, ``metrics.json``, report.

Plain functions over an :class:`tessera.models.inference.Inference`; the evaluate flow chains them.
"""

from __future__ import annotations

import csv
import io
import json
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tessera.models.inference import Inference
from tessera.tasks.base.files import atomic_write_bytes, atomic_write_json, swap_directory
from tessera.tasks.base.outputs import (
    STAGING_MARKER,
    check_output,
    is_staging,
    json_keys,
    mark_staging,
)
from tessera.tasks.evaluation.cluster_maps import write_tile_map, write_volume_tile_map
from tessera.tasks.evaluation.clusters import write_clusters
from tessera.tasks.evaluation.comparison import versus_markdown
from tessera.tasks.evaluation.heldout import HeldOut
from tessera.tasks.evaluation.latents import LatentReport
from tessera.tasks.store.format import StoreInfo

METRICS_FILE = "metrics.json"
REPORT_FILE = "report.md"
PLOTS, MAPS = "plots", "maps"


def is_evaluation(path: Path) -> bool:
    """A folder written by ``tessera evaluate``: ``metrics.json`` beside ``report.md``, or the
    ``metrics.json`` alone that git keeps of one (a fresh clone, before ``dvc pull``)."""
    keys = json_keys(path / METRICS_FILE)
    return bool(keys) and ((path / REPORT_FILE).is_file() or "n_tiles" in keys)


def flat_metrics(
    inf: Inference, rep: LatentReport, extra: dict[str, float] | None = None
) -> dict[str, float | None]:
    """One flat dict for ``metrics.json``: class-indexed keys (``dice_0``, ``stitched_iou_2``)
    named by class; NaN → null."""
    merged = {**inf.metrics, **rep.metrics, **(extra or {})}
    out: dict[str, float | None] = {}
    for key, v in sorted(merged.items()):
        head, _, index = key.rpartition("_")
        if head.endswith(("dice", "iou")) and index.isdigit() and int(index) < len(inf.class_names):
            key = f"{head}_{inf.class_names[int(index)]}"
        f = float(v)
        out[key] = f if math.isfinite(f) else None
    return out


def _write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> Path:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    atomic_write_bytes(path, buf.getvalue().encode())
    return path


def write_tables(
    out: Path, inf: Inference, rep: LatentReport, history: dict[str, list[float]]
) -> list[Path]:
    """The tables behind the PNGs, as CSV for ``dvc plots``."""
    d = out / PLOTS
    names = inf.class_names
    label_name = [names[t] if t >= 0 else "" for t in inf.targets]
    paths = [
        _write_csv(
            d / "silhouette_sweep.csv", ["k", "silhouette"], [[k, s] for k, s in rep.sweep.items()]
        )
    ]
    emb = rep.embeddings
    cols = [f"{m}_{a}" for m in emb for a in ("x", "y")]
    rows = [
        [m.get("tile_id", i), *[float(emb[k][i, a]) for k in emb for a in (0, 1)], int(c), lab]
        for i, (m, c, lab) in enumerate(zip(inf.metas, rep.clusters, label_name, strict=True))
    ]
    paths.append(_write_csv(d / "embedding.csv", ["tile_id", *cols, "cluster", "label"], rows))
    if inf.kl_per_dim is not None:
        kl = [[i, float(v)] for i, v in enumerate(inf.kl_per_dim)]
        paths.append(_write_csv(d / "kl_per_dim.csv", ["dim", "kl"], kl))
    if any(history.values()):
        n = max(len(v) for v in history.values())
        keys = sorted(k for k in history if history[k])
        rows = [
            [e + 1, *[history[k][e] if e < len(history[k]) else "" for k in keys]] for e in range(n)
        ]
        paths.append(_write_csv(d / "loss_curve.csv", ["epoch", *keys], rows))
    if inf.class_pred is not None:
        pairs = [
            [names[t], names[p]] for t, p in zip(inf.targets, inf.class_pred, strict=True) if t >= 0
        ]
        paths.append(_write_csv(d / "confusion.csv", ["actual", "predicted"], pairs))
    return paths


def write_plots(
    out: Path, inf: Inference, rep: LatentReport, history: dict[str, list[float]], title: str
) -> list[Path]:
    """Reconstructions, segmentation overlays, embeddings, KL, curves, confusion, samples."""
    from tessera.models.plots import (
        plot_bars,
        plot_confusion,
        plot_curves,
        plot_embedding,
        plot_reconstructions,
        plot_samples,
    )

    d = out / PLOTS
    paths: list[Path] = []
    ex = inf.examples
    if ex:
        paths.append(d / "reconstructions.png")
        rec = {k: ex[k] for k in ("input", "reconstruction", "error")}
        plot_reconstructions(rec, paths[-1], f"{title}: input, reconstruction, |error|")
    if "label" in ex:
        paths.append(d / "segmentation.png")
        cols = {k: ex[k] for k in ("input", "label", "prediction")}
        plot_reconstructions(
            cols, paths[-1], f"{title}: label and prediction", ("label", "prediction"), "input",
            inf.class_names,
        )  # fmt: skip
    paths.append(d / "embedding.png")
    colours = {f"k-means (k={rep.k})": rep.clusters, "label": inf.targets}
    names = {"label": inf.class_names} if inf.class_names else None
    plot_embedding(rep.embeddings, colours, paths[-1], f"{title}: latents", names)
    if inf.kl_per_dim is not None:
        paths.append(d / "kl_per_dim.png")
        plot_bars(inf.kl_per_dim, paths[-1], f"{title}: KL per latent dimension", "KL (nats)")
    if any(history.values()):
        paths.append(d / "loss_curve.png")
        plot_curves({k: v for k, v in history.items() if v}, paths[-1], f"{title}: training")
    if rep.confusion is not None:
        paths.append(d / "confusion.png")
        plot_confusion(rep.confusion, inf.class_names, paths[-1], f"{title}: tile classes")
    if inf.samples:
        paths.append(d / "samples.png")
        plot_samples(inf.samples, paths[-1], f"{title}: generated, one row per class")
    return paths


def evaluated_on(heldout: HeldOut) -> dict[str, str]:
    """The report's words on what each score measures."""
    split = "the store's test split of the training sources: slabs or blocks of the images "
    split += "trained on (same subject or scene)"
    if not heldout.scenes:
        return {"split scores": split, "held-out scores": "none (no held-out source)"}
    pairs = ", ".join(
        f"{s} (labels {lab})" for s, lab in zip(heldout.scenes, heldout.labels, strict=True)
    )
    return {
        "split scores (dice_*, iou_*)": split,
        "held-out scores (heldout_*)": f"whole scenes never trained on, mapped as tessera "
        f"predict maps them: {pairs}",
    }


def write_heldout_plots(
    out: Path, heldout: HeldOut, title: str, class_names: list[str]
) -> list[Path]:
    """Per held-out scene, its panels (a volume's three orthogonal slices, a raster's map)
    with its labels and the model's classes."""
    from tessera.models.plots import plot_orthogonal_overlays

    paths = []
    for v in heldout.views:
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in v.scene)
        paths.append(out / PLOTS / f"heldout_{safe}.png")
        rows = {"labels": v.label, "model": v.predicted}
        plot_orthogonal_overlays(
            v.image, rows, paths[-1], f"{title} on held-out {v.scene}", class_names, v.panels
        )
    return paths


def write_cluster_maps(
    out: Path, inf: Inference, rep: LatentReport, stride: int, axis: int
) -> list[Path]:
    """Each tile's k-means cluster painted back per scene: GeoTIFF (raster) or NIfTI (volume).

    The k-means fitted on the evaluated split assigns every tile of the sources.
    """
    if inf.map_latents is None or not inf.map_metas:
        return []
    ids = np.asarray(rep.kmeans.predict(inf.map_latents))
    by_scene: dict[str, list[int]] = {}
    for i, m in enumerate(inf.map_metas):
        by_scene.setdefault(str(m["scene_id"]), []).append(i)
    paths = []
    for scene, rows in sorted(by_scene.items()):
        metas = [inf.map_metas[i] for i in rows]
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in scene)
        if metas[0].get("transform"):
            p = write_tile_map(out / MAPS / f"{safe}_clusters.tif", metas, ids[rows], stride)
        else:
            p = write_volume_tile_map(
                out / MAPS / f"{safe}_clusters.nii.gz", metas, ids[rows], stride, axis
            )
        paths.append(p)
    return paths


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.4g}"


def report_markdown(
    experiment: str,
    metrics: dict[str, float | None],
    info: dict[str, Any],
    plots: list[Path],
    maps: list[Path],
    out: Path,
    link_plots: bool = True,
) -> str:
    """The metrics table, with the PNGs linked (relative to ``out``) and the maps listed."""
    lines = [f"# Evaluation: {experiment}", ""]
    lines += [f"- {k}: {v}" for k, v in info.items()]
    lines += ["", *versus] if (versus := versus_markdown(metrics)) else []
    lines += ["", "## Metrics", "", "| metric | value |", "| --- | --- |"]
    lines += [
        f"| {k} | {_fmt(v)} |" for k, v in metrics.items() if not k.startswith("silhouette_k")
    ]
    sweep = {k: v for k, v in metrics.items() if k.startswith("silhouette_k")}
    if sweep:
        lines += [
            "",
            "Silhouette by k: " + ", ".join(f"{k[12:]}: {_fmt(v)}" for k, v in sweep.items()),
        ]
    if plots and link_plots:
        lines += ["", "## Plots", ""]
        lines += [f"![{p.stem}]({p.relative_to(out).as_posix()})" for p in plots]
    if maps:
        lines += ["", "## Cluster maps", ""]
        lines += [f"- `{p.relative_to(out).as_posix()}`" for p in maps]
    return "\n".join(lines) + "\n"


def write_report(out: Path, text: str) -> Path:
    """``report.md``, atomically."""
    atomic_write_bytes(out / REPORT_FILE, text.encode())
    return out / REPORT_FILE


def training_history(model_dir: Path) -> dict[str, list[float]]:
    """Epoch losses recorded by ``tessera.models.run.fit`` in the run's summary (empty if
    absent)."""
    from tessera.models.run.run_config import SUMMARY_FILE

    path = model_dir / SUMMARY_FILE
    if not path.exists():
        return {}
    history = json.loads(path.read_text()).get("history") or {}
    return {str(k): [float(x) for x in v] for k, v in history.items()}


def _staging(out: Path) -> tuple[Path, Path]:
    """The folders an evaluation is written in, and where the one it replaces waits."""
    return out.with_name(f".{out.name}.tmp"), out.with_name(f".{out.name}.old")


def check_evaluation_output(out: Path) -> Path:
    """Refuse ``out`` unless it is absent or a previous evaluation (so are its staging and
    backup folders); returns it absolute. Raises :class:`OutputRefusedError`."""
    tmp, old = _staging(out)
    return check_output(
        out, is_evaluation, "Tessera evaluation", (), {tmp: is_staging, old: is_evaluation}
    )


@dataclass(frozen=True, eq=False)  # arrays: compared and hashed by identity
class Findings:
    """What an evaluation found: the inference over its split, the report on its latents,
    the training's history, the stitched maps' scores and the held-out scores."""

    inf: Inference
    rep: LatentReport
    history: dict[str, list[float]]
    stitched: dict[str, float] = field(default_factory=dict)
    heldout: HeldOut = field(default_factory=HeldOut)


def write_evaluation(out: Path, experiment: str, found: Findings, store: Path) -> dict[str, Any]:
    """Write metrics.json, tables, PNGs, cluster maps and report.md into ``out`` at once;
    the stitched and held-out scores join the metrics.

    Everything is written to a sibling temporary directory that replaces ``out`` at the end.
    """
    inf, rep, history, heldout = found.inf, found.rep, found.history, found.heldout
    params = StoreInfo.read(store).params
    out = check_evaluation_output(out)
    tmp = _staging(out)[0]
    shutil.rmtree(tmp, ignore_errors=True)
    mark_staging(tmp)
    metrics = flat_metrics(inf, rep, {**found.stitched, **heldout.metrics})
    write_tables(tmp, inf, rep, history)
    plots = write_plots(tmp, inf, rep, history, experiment)
    plots += write_heldout_plots(tmp, heldout, experiment, inf.class_names)
    maps = write_cluster_maps(tmp, inf, rep, params.stride, params.axis)
    info = {
        "model": inf.model_type,
        "tiles evaluated": len(inf.latents),
        "classes": ", ".join(inf.class_names) or "none",
        "capacity mode": inf.capacity_mode,
        "clusters k": rep.k,
    } | evaluated_on(heldout)
    text = report_markdown(experiment, metrics, info, plots, maps, tmp)
    write_report(tmp, text)
    atomic_write_json(tmp / METRICS_FILE, metrics)
    write_clusters(tmp, rep.kmeans.cluster_centers_, rep.k, inf.model_type)
    (tmp / STAGING_MARKER).unlink()
    swap_directory(tmp, out, _staging(out)[1])
    return {
        "experiment": experiment,
        "out": str(out),
        "metrics": metrics,
        "plots": [str(out / p.relative_to(tmp)) for p in plots],
        "maps": [str(out / p.relative_to(tmp)) for p in maps],
        "markdown": report_markdown(experiment, metrics, info, [], [], tmp, link_plots=False),
    }
