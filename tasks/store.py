"""The tile store: sharded ``.npy`` tiles, a Parquet index and ``store.json``.

Layout::

    <store>/store.json          version, parameters, sources, classes, per-band statistics
    <store>/index.parquet       one row per tile
    <store>/parts/<part>/   a content-addressed part per scene: tiles-NNN.{image,valid,label}.npy

A store is built in ``<store>.tmp`` beside it under an exclusive lock and renamed into place.
Only a previous Tessera store (and Tessera's own staging) is ever replaced: see
:func:`check_store_output`.
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tasks.errors import StoreLockedError
from tasks.files import atomic_write_bytes, atomic_write_json
from tasks.labels import IGNORE
from tasks.outputs import (
    STAGING_MARKER,
    OutputRefusedError,
    check_output,
    is_staging,
    is_tile_store,
    mark_staging,
)
from tasks.stats import BandStats, merge_states
from tasks.tiling import PART_FILE, STORE_VERSION

INDEX_FILE = "index.parquet"
INFO_FILE = "store.json"


def lock_path(out: Path) -> Path:
    """The lock file guarding writers of ``out``."""
    return out.parent / f".{out.name}.lock"


def staging_dir(out: Path) -> Path:
    """Where a store is built before it is renamed into place."""
    return out.parent / f"{out.name}.tmp"


def _previous_dir(out: Path) -> Path:
    """Where the store being replaced waits until the new one is in place."""
    return out.parent / f".{out.name}.old"


_STAGING_NAMES = ("parts", INDEX_FILE, INFO_FILE, "rejected.json")


def check_store_output(out: Path, inputs: Sequence[Path] = ()) -> Path:
    """Refuse ``out`` unless it is absent or a previous tile store (and so are its staging and
    backup folders); returns it absolute. Raises :class:`OutputRefusedError`."""
    out = Path(os.path.abspath(out))
    return check_output(
        out,
        is_tile_store,
        "Tessera tile store",
        inputs,
        {
            staging_dir(out): lambda p: is_staging(p, _STAGING_NAMES),
            _previous_dir(out): is_tile_store,
        },
    )


@contextmanager
def store_writer(out: Path) -> Iterator[Path]:
    """Hold the store's lock and yield a staging directory, keeping finished parts of a killed run.

    A second writer gets :class:`StoreLockedError` at once; an ``out`` that is not a previous
    store is refused (:func:`check_store_output`) before anything is written.
    """
    out = check_store_output(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    lock = lock_path(out)
    fh = _locked(lock, out)
    try:
        check_store_output(out)  # again, under the lock
        shutil.rmtree(_previous_dir(out), ignore_errors=True)
        tmp = staging_dir(out)
        mark_staging(tmp)
        parts = tmp / "parts"
        parts.mkdir(parents=True, exist_ok=True)
        for p in parts.iterdir():  # unfinished parts of a killed run
            if not (p / PART_FILE).exists():
                shutil.rmtree(p, ignore_errors=True)
        for f in tmp.iterdir():
            if f.is_file() and f.name in _STAGING_NAMES:
                f.unlink()
        yield tmp
        lock.unlink(missing_ok=True)  # done: no lock file left beside the store
    finally:
        fcntl.flock(fh, fcntl.LOCK_UN)
        fh.close()


_LOCK_TEXT = "tessera tile store lock\n"


def _locked(lock: Path, out: Path) -> Any:
    """Open and exclusively lock ``lock``; a file that was removed meanwhile is opened anew."""
    while True:
        fh = open(lock, "a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            raise StoreLockedError(f"{out}: another tessera run is writing this store") from None
        try:
            same = os.stat(lock).st_ino == os.fstat(fh.fileno()).st_ino
        except FileNotFoundError:
            same = False
        if not same:  # the previous holder removed it after we opened it: try the new one
            fh.close()
            continue
        fh.seek(0)
        text = fh.read()
        if text not in ("", _LOCK_TEXT):
            fh.close()
            raise OutputRefusedError(
                f"{lock}: exists and was not made by Tessera; refusing to touch it "
                f"(move it away to write {out.name})"
            )
        if not text:
            fh.write(_LOCK_TEXT)
            fh.flush()
        return fh


def discard_staging(tmp: Path) -> None:
    """Remove a staging folder this run made (it carries the staging marker)."""
    if (tmp / STAGING_MARKER).is_file():
        shutil.rmtree(tmp, ignore_errors=True)


def finish_store(out: Path, tmp: Path, parts: list[dict[str, Any]], info: dict[str, Any]) -> None:
    """Write index and ``store.json`` into ``tmp``, drop unused parts and swap it into place."""
    rows = [
        row | {"shard": f"parts/{p['name']}/{row['shard']}"} for p in parts for row in p["rows"]
    ]
    geo = [c for c in ("crs", "transform", "affine") if any(c in r for r in rows)]
    index = pd.DataFrame(rows, columns=_INDEX_COLUMNS + geo)
    buf = io.BytesIO()
    index.to_parquet(buf, index=False)
    atomic_write_bytes(tmp / INDEX_FILE, buf.getvalue())
    keep = {p["name"] for p in parts}
    for d in (tmp / "parts").iterdir():
        if d.name not in keep:
            shutil.rmtree(d, ignore_errors=True)
    atomic_write_json(tmp / INFO_FILE, info | {"version": STORE_VERSION, "n_tiles": len(index)})
    (tmp / STAGING_MARKER).unlink(missing_ok=True)
    old = _previous_dir(out)
    if out.exists():
        os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


_INDEX_COLUMNS = [
    "tile_id",
    "scene_id",
    "source",
    "split",
    "shard",
    "shard_row",
    "row_off",
    "col_off",
    "slice",
    "valid_fraction",
    "has_label",
    "label_fractions",
]


def source_stats(
    parts: list[dict[str, Any]], band_names: dict[str, list[str]]
) -> dict[str, dict[str, dict[str, float]]]:
    """Per source, per band: merged summary statistics over every scene's parts."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for source, names in band_names.items():
        mine = [p for p in parts if p["source"] == source]
        if not mine:
            continue
        dtypes = sorted({str(p.get("dtype")) for p in mine})
        if len(dtypes) > 1:
            scenes = ", ".join(sorted(p["scene_id"] for p in mine))
            raise ValueError(
                f"source {source!r}: its scenes ({scenes}) have different dtypes "
                f"({', '.join(dtypes)}); give them as separate sources or inputs"
            )
        out[source] = {
            name: BandStats.from_state(merge_states([p["stats"][b] for p in mine])).summary()
            for b, name in enumerate(names)
        }
    return out


class TileStore:
    """Random access to the tiles of a store.

    ``s[i]`` returns ``{"image": (C, H, W), "label": (H, W) or None, "valid": (H, W) bool,
    "meta": dict}`` with the source values in the source dtype.
    """

    def __init__(self, root: Path, index: pd.DataFrame, info: dict[str, Any]) -> None:
        self.root = root
        self.index = index
        self.info = info
        self._shard = index["shard"].to_numpy()
        self._row = index["shard_row"].to_numpy()
        self._has_label = index["has_label"].to_numpy()
        self._meta = self._build_meta(index)
        self._maps: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray | None]] = {}

    @classmethod
    def open(cls, path: str | Path) -> TileStore:
        """Open a finished store."""
        root = Path(path)
        info = json.loads((root / INFO_FILE).read_text())
        return cls(root, pd.read_parquet(root / INDEX_FILE), info)

    @staticmethod
    def _build_meta(index: pd.DataFrame) -> list[dict[str, Any]]:
        cols = ["tile_id", "scene_id", "source", "split", "row_off", "col_off", "slice"]
        extra = [c for c in ("crs", "transform", "affine") if c in index.columns]
        metas = []
        for rec in index[cols + extra].to_dict("records"):
            m = {k: rec[k] for k in cols if k != "slice"}
            m["row_off"], m["col_off"] = int(m["row_off"]), int(m["col_off"])
            if rec["slice"] >= 0:
                m["slice"] = int(rec["slice"])
            for k in extra:
                v = rec[k]
                if v is not None and not (isinstance(v, float) and np.isnan(v)):
                    m[k] = [float(x) for x in v] if k != "crs" else v
            metas.append(m)
        return metas

    def __len__(self) -> int:
        return len(self.index)

    def _arrays(self, shard: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Memory maps of a shard's image, valid and label files (label None if unlabelled)."""
        arrays = self._maps.get(shard)
        if arrays is None:
            stem = str(self.root / shard.removesuffix(".image.npy"))
            label = Path(f"{stem}.label.npy")
            arrays = (
                np.load(self.root / shard, mmap_mode="r"),
                np.load(f"{stem}.valid.npy", mmap_mode="r"),
                np.load(label, mmap_mode="r") if label.exists() else None,
            )
            self._maps[shard] = arrays
        return arrays

    def __getitem__(self, i: int) -> dict[str, Any]:
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        image, valid, label = self._arrays(self._shard[i])
        row = int(self._row[i])
        return {
            "image": np.array(image[row]),
            "label": np.array(label[row]) if label is not None and self._has_label[i] else None,
            "valid": np.array(valid[row]),
            "meta": dict(self._meta[i]),
        }

    def get_batch(self, indices: Sequence[int] | np.ndarray) -> dict[str, Any]:
        """Stacked tiles of one channel layout, each copied once straight from its shard.

        ``label`` is None when no tile of the batch is labelled; otherwise unlabelled tiles
        are filled with the ignore value and ``has_label`` says which tiles carry labels.
        """
        idx = np.asarray(indices, dtype=np.int64)
        img0 = self._arrays(self._shard[idx[0]])[0]
        n, tile = len(idx), img0.shape[2:]
        image = np.empty((n, *img0.shape[1:]), dtype=img0.dtype)
        valid = np.empty((n, *tile), dtype=bool)
        has_label = self._has_label[idx].astype(bool)
        label = np.full((n, *tile), IGNORE, dtype=np.uint8) if has_label.any() else None
        for j, i in enumerate(idx):
            image_a, valid_a, label_a = self._arrays(self._shard[i])
            row = self._row[i]
            image[j] = image_a[row]
            valid[j] = valid_a[row]
            if label is not None and label_a is not None and has_label[j]:
                label[j] = label_a[row]
        return {
            "image": image,
            "label": label,
            "has_label": has_label,
            "valid": valid,
            "meta": [self._meta[int(i)] for i in idx],
        }

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_maps"] = {}
        return state
