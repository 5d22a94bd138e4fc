"""The shards of a store part: append-only ``.npy`` files that numpy can memory-map.

The header is written with room to spare and patched with the final length on close,
so tiles stream to disk without knowing their count in advance; :class:`ShardSet` rolls
a part's image, valid and label shards and writes them on a background thread.
"""

from __future__ import annotations

import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType

import numpy as np

from tessera.tasks.base.files import named
from tessera.tasks.store.format import image_file, label_file, shard_stem, valid_file

_HEADER_LEN = 256  # bytes, a multiple of 64 as the format asks


def _header(dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
    d = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
    body = repr(d).encode("latin1")
    pad = _HEADER_LEN - 10 - len(body) - 1
    if pad < 0:
        raise ValueError(f"shape {shape} does not fit the reserved .npy header")
    return (
        b"\x93NUMPY\x01\x00" + (_HEADER_LEN - 10).to_bytes(2, "little") + body + b" " * pad + b"\n"
    )


class NpyAppender:
    """Writes arrays of one item shape and dtype to a ``.npy`` file, one item at a time."""

    def __init__(self, path: Path, item_shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.path = path
        self.item_shape = tuple(item_shape)
        self.dtype = np.dtype(dtype)
        self.count = 0
        self._fh = open(path, "wb")
        self._write(_header(self.dtype, (0, *self.item_shape)))

    def _write(self, data: bytes | memoryview) -> None:
        try:
            self._fh.write(data)
        except OSError as exc:  # a full disk names no file: name the shard
            raise named(exc, self.path) from None

    def append(self, item: np.ndarray) -> int:
        """Write one item; returns its row in the file."""
        if item.shape != self.item_shape or item.dtype != self.dtype:
            raise ValueError(f"item {item.shape}/{item.dtype} != {self.item_shape}/{self.dtype}")
        self._write(np.ascontiguousarray(item).data)
        self.count += 1
        return self.count - 1

    def close(self) -> None:
        """Patch the header with the final count and close.

        Shards are not fsynced: a store is published by renaming its directory, which is atomic
        against a killed process; power loss is outside what the rename protects.
        """
        if self._fh.closed:
            return
        try:
            self._fh.seek(0)
            self._fh.write(_header(self.dtype, (self.count, *self.item_shape)))
            self._fh.close()
        except OSError as exc:
            with contextlib.suppress(OSError):
                self._fh.close()  # its buffer may fail to flush again: still closed after
            raise named(exc, self.path) from None

    def __enter__(self) -> NpyAppender:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class ShardSet:
    """Rolling image/valid/label shards of one part, written by a background thread.

    Shard names and rows are assigned in the caller's thread, so the index never depends on
    write timing; at most ``max_pending`` tiles wait in memory for the writer.
    """

    def __init__(
        self,
        part_dir: Path,
        prefix: str,
        item: tuple[int, ...],
        dtype: np.dtype,
        labelled: bool,
        max_tiles: int,
        max_pending: int = 32,
    ) -> None:
        self.part_dir, self.prefix, self.item, self.dtype = part_dir, prefix, item, dtype
        self.labelled, self.max_tiles = labelled, max_tiles
        self.n = 0
        self.files: list[NpyAppender] = []
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shard-writer")
        self._slots = threading.BoundedSemaphore(max_pending)
        self._error: BaseException | None = None  # the first failed write, raised by add/close

    def _stem(self, k: int) -> Path:
        return shard_stem(self.part_dir, self.prefix, k)

    def _write(
        self, k: int, image: np.ndarray, valid: np.ndarray, label: np.ndarray | None
    ) -> None:
        try:
            image = np.ascontiguousarray(image)  # copies off the main thread
            valid = np.ascontiguousarray(valid)
            if not self.files or self.files[0].path != image_file(self._stem(k)):
                self._close_files()
                stem, size = self._stem(k), self.item[1:]
                self.files = [
                    NpyAppender(image_file(stem), self.item, self.dtype),
                    NpyAppender(valid_file(stem), size, np.dtype(bool)),
                ]
                if self.labelled:
                    self.files.append(NpyAppender(label_file(stem), size, np.dtype(np.uint8)))
            self.files[0].append(image)
            self.files[1].append(valid)
            if label is not None:
                self.files[2].append(label)
        except BaseException as exc:
            self._error = self._error or exc
        finally:
            self._slots.release()

    def add(
        self, image: np.ndarray, valid: np.ndarray, label: np.ndarray | None
    ) -> tuple[str, int]:
        """Queue one tile; returns (image shard name, row)."""
        k, row = divmod(self.n, self.max_tiles)
        self.n += 1
        if self._error is not None:
            raise self._error
        self._slots.acquire()
        self._writer.submit(self._write, k, image, valid, label)
        return image_file(self._stem(k)).name, row

    def _close_files(self) -> None:
        for f in self.files:
            f.close()

    def close(self) -> None:
        """Wait for every queued write, then close the files."""
        self._writer.shutdown(wait=True)
        self._close_files()
        if self._error is not None:
            raise self._error
