"""Cut one scene into tiles and stream them into a part of the tile store."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from tessera.tasks.base.files import atomic_write_json, attempt_path
from tessera.tasks.sources.catalog import SceneRecord
from tessera.tasks.sources.raster import gdal_env
from tessera.tasks.store.format import IGNORE, PART_FILE, STORE_VERSION
from tessera.tasks.store.shards import ShardSet
from tessera.tasks.store.stats import BandStats, valid_values
from tessera.tasks.tiling.grid import TileGrid
from tessera.tasks.tiling.params import SplitParams, TileParams
from tessera.tasks.tiling.scene import RasterScene, VolumeScene, open_scene
from tessera.tasks.tiling.splits import (
    raster_blocks,
    raster_tile_split,
    slab_splits,
    subject_splits,
    uses_subject_splits,
)

STATS_SAMPLE_PER_STRIP = 1 << 18  # pixels per band and strip that the automatic row step keeps


def subject(rec: SceneRecord) -> str:
    """The unit a volume's split keeps whole: its subject (a BIDS participant), else itself."""
    return rec.subject or rec.scene_id


def plan_splits(records: list[SceneRecord], p: SplitParams) -> dict[str, dict[str, Any]]:
    """How each scene is split: spatial blocks, a whole subject (every volume of a BIDS
    participant in one split), or slabs of one subject."""
    plan: dict[str, dict[str, Any]] = {}
    by_source: dict[str, list[SceneRecord]] = {}
    for r in records:
        by_source.setdefault(r.source, []).append(r)
    for recs in by_source.values():
        if recs[0].kind == "geotiff":
            plan.update({r.scene_id: {"mode": "blocks"} for r in recs})
            continue
        subjects = sorted({subject(r) for r in recs})
        if uses_subject_splits(len(subjects), p):
            subj = subject_splits(subjects, p)
            plan.update({r.scene_id: {"mode": "subject", "split": subj[subject(r)]} for r in recs})
        else:
            plan.update({r.scene_id: {"mode": "slab"} for r in recs})
    return plan


BAND_PIXELS = 1 << 26  # a raster plane larger than this is cut in row bands, one task each
Rows = tuple[int, int]  # tile rows [first, stop) of a band, by their top pixel row


def row_bands(rec: SceneRecord, tile: TileParams) -> list[Rows | None]:
    """The bands of rows a scene is cut in, each a task of its own so that one big scene keeps
    several workers busy: ``[None]`` (the whole scene) for volumes and for rasters up to
    ``BAND_PIXELS`` pixels; else bands of whole tile rows of about that many pixels."""
    if rec.kind != "geotiff" or rec.shape[1] * rec.shape[2] <= BAND_PIXELS:
        return [None]
    offsets = TileGrid(rec.shape[1], rec.shape[2], tile.size, tile.stride).row_offsets
    per_band = max(1, BAND_PIXELS // (rec.shape[2] * tile.stride))
    bands: list[Rows | None] = []
    for i in range(0, len(offsets), per_band):
        chunk = offsets[i : i + per_band]
        bands.append((chunk[0], chunk[-1] + 1))
    return bands


def part_name(
    rec: SceneRecord, tile: TileParams, assignment: dict[str, Any], rows: Rows | None = None
) -> str:
    """Content-addressed name of a scene's part: file hashes, label, parameters (and the band
    of rows, for a scene cut in bands)."""
    band = {"rows": list(rows)} if rows else {}
    key = json.dumps(
        {
            **band,
            "v": STORE_VERSION,
            "sha": rec.sha256,
            "label_sha": rec.label_sha256,
            "label": rec.label_spec,
            "bands": rec.band_names,
            "resampling": rec.resampling,
            "nodata": rec.nodata,
            "tile": tile.model_dump(),
            "split": assignment,
        },
        sort_keys=True,
    )
    slug = rec.scene_id.replace("/", "__") + (f"-r{rows[0]}" if rows else "")
    return f"{slug}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def _surely_valid(strip: np.ndarray, nodata: float | None) -> bool:
    """True when no pixel can be nodata or NaN: one or two fast reductions instead of a mask."""
    if strip.dtype.kind == "f":
        lo, hi = strip.min(), strip.max()
        if np.isnan(lo) or np.isnan(hi):
            return False
    elif nodata is None or np.isnan(nodata):
        return True
    else:
        info = np.iinfo(strip.dtype)
        if nodata <= info.min:  # e.g. 0 for unsigned data: only the minimum matters
            return bool(strip.min() > nodata)
        if nodata >= info.max:
            return bool(strip.max() < nodata)
        lo, hi = strip.min(), strip.max()
    return nodata is None or np.isnan(nodata) or not (lo <= nodata <= hi)


@dataclass
class _Cutting:
    """What one part gathers while its planes are cut: the shards, per-band statistics,
    index rows and counts; and the reader thread and progress bar it cuts with."""

    shards: ShardSet
    stats: list[BandStats]
    rows: list[dict]
    counts: dict[str, int]
    pool: ThreadPoolExecutor
    bar: tqdm


def _tile_plane(
    scene: RasterScene | VolumeScene,
    plane: int,
    tile: TileParams,
    split_of: Any,
    part: _Cutting,
    rows_of_band: Rows | None = None,
) -> None:
    shards, stats, rows, counts, pool, bar = (
        part.shards, part.stats, part.rows, part.counts, part.pool, part.bar
    )  # fmt: skip
    rec = scene.rec
    H, W = scene.plane_shape
    grid = TileGrid(H, W, tile.size, tile.stride)
    s = tile.size
    nodata = rec.nodata
    pad = nodata if nodata is not None else 0
    C = rec.shape[0]
    roffs = grid.row_offsets
    if rows_of_band is not None:
        roffs = [r for r in roffs if rows_of_band[0] <= r < rows_of_band[1]]
    after = {r: n for r, n in zip(grid.row_offsets, grid.row_offsets[1:], strict=False)}
    coffs = grid.col_offsets
    all_valid = np.ones((s, s), dtype=bool)
    step = tile.stats_row_step or max(1, -(-(s * W) // STATS_SAMPLE_PER_STRIP))

    def fetch(r: int) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        h = min(s, H - r)
        return (
            scene.read(plane, r, 0, h, W),
            scene.read_label(plane, r, 0, h, W),
            scene.read_valid(plane, r, 0, h, W),
        )

    nxt = pool.submit(fetch, roffs[0])
    for ri, r in enumerate(roffs):
        strip, lab, opaque = nxt.result()
        if ri + 1 < len(roffs):
            nxt = pool.submit(fetch, roffs[ri + 1])
        bar.update(1)
        h = strip.shape[1]
        fresh = (after[r] - r) if r in after else h  # rows no later strip of the plane reads
        for b in range(C):
            sample = strip[b, :fresh:step]
            stats[b].update(sample if opaque is None else sample[opaque[:fresh:step]], nodata)
        ok: np.ndarray | None = opaque  # None: every pixel of the strip is valid
        if not _surely_valid(strip, nodata):
            ok = np.asarray(valid_values(strip, nodata).all(axis=0))
            if opaque is not None:
                ok &= opaque
        for c in coffs:
            counts["total"] += 1
            split = split_of(r, c)
            if split is None:
                counts["dropped_border"] += 1
                continue
            w = min(s, W - c)
            n_valid = h * w if ok is None else int(ok[:, c : c + w].sum())
            vf = n_valid / (s * s)
            # an image smaller than the window is one padded tile, judged on its own pixels
            judged = n_valid / (H * W) if H <= s and W <= s else vf
            if judged < tile.min_valid_fraction or n_valid == 0:
                counts["dropped_invalid"] += 1
                continue
            if h == s and w == s:
                img = strip[:, :, c : c + s]  # a view: the writer thread copies it out
                valid = all_valid if ok is None else ok[:, c : c + s]
            else:
                img = np.full((C, s, s), pad, dtype=strip.dtype)
                img[:, :h, :w] = strip[:, :, c : c + w]
                valid = np.zeros((s, s), dtype=bool)
                valid[:h, :w] = True if ok is None else ok[:, c : c + w]
            label = None
            fractions: list[float] = []
            if lab is not None:
                label = np.full((s, s), IGNORE, dtype=np.uint8)
                label[:h, :w] = lab[:, c : c + w]
                n_cls = len(rec.class_names)
                cnt = np.bincount(label[label != IGNORE], minlength=n_cls)[:n_cls]
                fractions = (cnt / float(s * s)).tolist()
            shard, srow = shards.add(img, valid, label)
            counts["kept"] += 1
            rows.append(
                {
                    "tile_id": f"{rec.scene_id}:{plane}:{r}:{c}",
                    "scene_id": rec.scene_id,
                    "source": rec.source,
                    "split": split,
                    "shard": shard,
                    "shard_row": srow,
                    "row_off": r,
                    "col_off": c,
                    "slice": plane if rec.kind != "geotiff" else -1,
                    "valid_fraction": vf,
                    "has_label": label is not None,
                    "label_fractions": fractions,
                    **scene.tile_meta(plane, r, c),
                }
            )


@dataclass(frozen=True)
class PartFolders:
    """Where a scene's part goes (``staging``, the new store's parts folder) and the parts
    folders of finished stores whose part of the same content key is linked instead."""

    staging: Path
    reuse: tuple[Path, ...] = ()


def tile_scene(
    rec: SceneRecord,
    tile: TileParams,
    assignment: dict[str, Any],
    parts: PartFolders,
    base: Path,
    progress: bool = True,
    rows: Rows | None = None,
) -> dict[str, Any]:
    """Tile one scene (or one band of its tile rows, :func:`row_bands`) into
    ``parts.staging/<content key>/``; reuses a finished part when present.

    The part's index rows and per-band statistics stay in its ``part.json``; what returns is
    :func:`part_digest`, a few numbers, so that the orchestrator's cost does not grow with
    the tile count.
    """
    name = part_name(rec, tile, assignment, rows)
    parts_dir = parts.staging
    final = parts_dir / name
    if (final / PART_FILE).exists():
        return part_digest(read_part(parts_dir, name))
    for other in parts.reuse:
        if (other / name / PART_FILE).exists():
            tmp = _attempt_dir(final, ".linking")
            for f in (other / name).iterdir():
                os.link(f, tmp / f.name)
            _publish(tmp, final)
            return part_digest(read_part(parts_dir, name))
    work = _attempt_dir(final, ".partial")
    with gdal_env(), ThreadPoolExecutor(max_workers=1) as pool:
        scene = open_scene(rec, base, tile.axis)
        shards = ShardSet(
            work,
            "tiles",
            (rec.shape[0], tile.size, tile.size),
            scene.dtype,
            rec.label_spec is not None,
            tile.shard_tiles,
        )
        index_rows: list[dict[str, Any]] = []
        counts = {"total": 0, "kept": 0, "dropped_border": 0, "dropped_invalid": 0}
        stats = [BandStats.for_dtype(scene.dtype) for _ in rec.band_names]
        split_fn = _split_fn(rec, scene, tile, assignment)
        height, width = scene.plane_shape
        offsets = TileGrid(height, width, tile.size, tile.stride).row_offsets
        n_strips = len([r for r in offsets if rows is None or rows[0] <= r < rows[1]])
        bar = tqdm(
            total=scene.n_planes * n_strips,
            desc=rec.scene_id,
            unit="row",
            disable=None if progress else True,  # None: only on a terminal
            leave=False,
        )
        try:
            for plane in range(scene.n_planes):
                cutting = _Cutting(shards, stats, index_rows, counts, pool, bar)
                _tile_plane(scene, plane, tile, split_fn(plane), cutting, rows)
        finally:
            bar.close()
            shards.close()  # waits for the writer thread, also when tiling failed
            scene.close()
    summary = {
        "name": name,
        "scene_id": rec.scene_id,
        "source": rec.source,
        "rows": index_rows,
        "counts": counts,
        "stats": [s.to_state() for s in stats],
        "dtype": str(scene.dtype),
    }
    atomic_write_json(work / PART_FILE, summary, compact=True)
    _publish(work, final)
    return part_digest(summary)


def _attempt_dir(final: Path, suffix: str) -> Path:
    """A new folder of this attempt alone at part ``final`` (what a killed attempt leaves, the
    store's finish drops)."""
    work = attempt_path(final, suffix)
    work.mkdir(parents=True)
    return work


def _publish(work: Path, final: Path) -> None:
    """Rename a finished attempt into place; when another attempt got there first (the same
    content: a part's name is its content key), keep that one."""
    try:
        os.replace(work, final)
    except OSError:
        if not (final / PART_FILE).exists():
            raise
        shutil.rmtree(work, ignore_errors=True)


def read_part(parts_dir: Path, name: str) -> dict[str, Any]:
    """A finished part's summary (``part.json``): index rows, statistics state and counts."""
    return dict(json.loads((parts_dir / name / PART_FILE).read_text()))


def part_digest(part: dict[str, Any]) -> dict[str, Any]:
    """What a tiling task hands back to the flow: the part's name, scene, source, counts and
    number of tiles, never its rows."""
    keys = ("name", "scene_id", "source", "counts")
    return {k: part[k] for k in keys} | {"tiles": len(part["rows"])}


def _split_fn(
    rec: SceneRecord, scene: RasterScene | VolumeScene, tile: TileParams, assignment: dict[str, Any]
) -> Any:
    """plane → (row_off, col_off) → split name or None (dropped)."""
    p = tile.split
    H, W = scene.plane_shape
    if assignment["mode"] == "blocks":
        blocks = raster_blocks(rec.scene_id, H, W, p)
        return lambda plane: (
            lambda r, c: raster_tile_split(blocks, p.block_size, r, c, tile.size, H, W)
        )
    if assignment["mode"] == "subject":
        return lambda plane: lambda r, c: assignment["split"]
    per_slice = slab_splits(rec.scene_id, scene.n_planes, p)
    return lambda plane: lambda r, c: per_slice[plane]
