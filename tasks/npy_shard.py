"""Append-only ``.npy`` shard files that numpy can memory-map.

The header is written with room to spare and patched with the final length on close,
so tiles stream to disk without knowing their count in advance.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from types import TracebackType

import numpy as np

from tasks.files import named

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
