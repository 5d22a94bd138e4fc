"""Writing a tile store: one writer at a time, built in staging, swapped into place.

A store is built in ``<store>.tmp`` beside it under an exclusive lock and renamed into place.
Only a previous Tessera store (and Tessera's own staging) is ever replaced: see
:func:`check_store_output`.
"""

from __future__ import annotations

import fcntl
import io
import os
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from tessera.tasks.base.files import atomic_write_bytes, atomic_write_json, swap_directory
from tessera.tasks.base.outputs import (
    STAGING_MARKER,
    OutputRefusedError,
    check_output,
    is_staging,
    json_keys,
    mark_staging,
)
from tessera.tasks.store.format import (
    GEO_COLUMNS,
    INDEX_COLUMNS,
    INDEX_FILE,
    INFO_FILE,
    PART_FILE,
    PARTS_DIR,
    REJECTED_FILE,
    StoreInfo,
)


def is_tile_store(path: Path) -> bool:
    """A finished tile store: ``store.json`` with its format version and tile count."""
    return {"version", "n_tiles", "sources"} <= json_keys(path / INFO_FILE)


class StoreLockedError(Exception):
    """Another writer holds the lock on a tile store."""

    one_line = True


def lock_path(out: Path) -> Path:
    """The lock file guarding writers of ``out``."""
    return out.parent / f".{out.name}.lock"


def staging_dir(out: Path) -> Path:
    """Where a store is built before it is renamed into place."""
    return out.parent / f"{out.name}.tmp"


def _previous_dir(out: Path) -> Path:
    """Where the store being replaced waits until the new one is in place."""
    return out.parent / f".{out.name}.old"


_STAGING_NAMES = (PARTS_DIR, INDEX_FILE, INFO_FILE, REJECTED_FILE)


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
        parts = tmp / PARTS_DIR
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


def finish_store(
    out: Path, tmp: Path, parts: list[dict[str, Any]], info: StoreInfo, rejected: list[Any]
) -> StoreInfo:
    """Write index, ``rejected.json`` and ``store.json`` into ``tmp``, drop unused parts and
    swap it into place; returns the ``store.json`` written."""
    rows = [
        row | {"shard": f"{PARTS_DIR}/{p['name']}/{row['shard']}"}
        for p in parts
        for row in p["rows"]
    ]
    geo = [c for c in GEO_COLUMNS if any(c in r for r in rows)]
    index = pd.DataFrame(rows, columns=INDEX_COLUMNS + geo)
    buf = io.BytesIO()
    index.to_parquet(buf, index=False)
    atomic_write_bytes(tmp / INDEX_FILE, buf.getvalue())
    atomic_write_json(tmp / REJECTED_FILE, rejected)
    keep = {p["name"] for p in parts}
    for d in (tmp / PARTS_DIR).iterdir():
        if d.name not in keep:
            shutil.rmtree(d, ignore_errors=True)
    info = info.model_copy(update={"n_tiles": len(index)})
    atomic_write_json(tmp / INFO_FILE, info.to_json())
    (tmp / STAGING_MARKER).unlink(missing_ok=True)
    swap_directory(tmp, out, _previous_dir(out))
    return info
