"""Streaming, mergeable per-band statistics.

Each band keeps a 65,536-bin histogram plus exact float64 moments:
- integer data of at most 16 bits is binned by value, so percentiles are exact;
- any other dtype is binned by the top 16 bits of its float32 bit pattern
  (sign, exponent and 7 mantissa bits), so percentiles carry < 0.4 % relative error.
Histograms add, moments merge with Chan's formula, so shards and workers merge in any order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

N_BINS = 65536
_EXACT_KINDS = {np.dtype(t) for t in ("uint8", "int8", "uint16", "int16", "bool")}


def valid_values(a: np.ndarray, nodata: float | None) -> np.ndarray:
    """Elementwise: True where a value is neither NaN nor ``nodata``."""
    ok = ~np.isnan(a) if a.dtype.kind == "f" else np.ones(a.shape, dtype=bool)
    if nodata is not None and not np.isnan(nodata):
        ok &= a != nodata
    return ok


def _float_keys(x: np.ndarray) -> np.ndarray:
    """Monotone 16-bit keys of float32 values (top bits of the ordered bit pattern)."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    ordered = np.where(bits & 0x80000000, ~bits, bits | 0x80000000)
    return (ordered >> 16).astype(np.uint16)


def _float_key_bounds(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lowest and highest float32 values that map to each key."""
    key = key.astype(np.uint32)

    def unorder(o: np.ndarray) -> np.ndarray:
        bits = np.where(o & 0x80000000, o & 0x7FFFFFFF, ~o)
        return bits.astype(np.uint32).view(np.float32).astype(np.float64)

    a, b = unorder(key << 16), unorder((key << 16) | 0xFFFF)
    return np.minimum(a, b), np.maximum(a, b)


@dataclass
class BandStats:
    """Running statistics of one band, over valid (non-nodata, non-NaN) values."""

    exact: bool
    offset: int = 0
    count: int = 0
    mean: float = 0.0
    m2: float = 0.0
    min: float = float("inf")
    max: float = float("-inf")
    hist: np.ndarray = field(default_factory=lambda: np.zeros(N_BINS, dtype=np.int64))

    @classmethod
    def for_dtype(cls, dtype: np.dtype) -> BandStats:
        """Empty statistics suited to ``dtype``."""
        dtype = np.dtype(dtype)
        exact = dtype in _EXACT_KINDS
        offset = int(-np.iinfo(dtype).min) if exact and dtype.kind == "i" else 0
        return cls(exact=exact, offset=offset)

    def update(self, values: np.ndarray, nodata: float | None = None) -> None:
        """Add the valid values of ``values`` (any shape)."""
        x = values.reshape(-1)
        if x.dtype.kind == "f":
            x = x[~np.isnan(x)]
        if self.exact:
            counts = np.bincount(
                (x.astype(np.int64) + self.offset) if self.offset else x, minlength=N_BINS
            )
            if (
                nodata is not None
                and not np.isnan(nodata)
                and (0 <= int(nodata) + self.offset < N_BINS)
            ):
                counts[int(nodata) + self.offset] = 0
            self.hist += counts  # moments follow from the exact histogram when asked
            return
        if nodata is not None and not np.isnan(nodata):
            x = x[x != nodata]
        if x.size == 0:
            return
        xf = x.astype(np.float64)
        n, mean = int(xf.size), float(xf.mean())
        self._merge(n, mean, float(((xf - mean) ** 2).sum()), float(xf.min()), float(xf.max()))
        self.hist += np.bincount(_float_keys(x), minlength=N_BINS)

    def _sync_exact(self) -> None:
        """Exact dtypes: derive count, moments and range from the histogram."""
        if not self.exact:
            return
        n = int(self.hist.sum())
        self.count = n
        if n == 0:
            self.mean, self.m2, self.min, self.max = 0.0, 0.0, float("inf"), float("-inf")
            return
        nz = np.flatnonzero(self.hist)
        vals = nz.astype(np.float64) - self.offset
        c = self.hist[nz].astype(np.float64)
        self.mean = float((vals * c).sum() / n)
        self.m2 = float((c * (vals - self.mean) ** 2).sum())
        self.min, self.max = float(vals[0]), float(vals[-1])

    def _merge(self, n: int, mean: float, m2: float, lo: float, hi: float) -> None:
        total = self.count + n
        delta = mean - self.mean
        self.mean += delta * n / total
        self.m2 += m2 + delta * delta * self.count * n / total
        self.count = total
        self.min, self.max = min(self.min, lo), max(self.max, hi)

    def merge(self, other: BandStats) -> BandStats:
        """Fold ``other`` into this one and return self."""
        if other.exact != self.exact or other.offset != self.offset:
            raise ValueError("cannot merge statistics of different dtypes")
        if self.exact:
            self.hist += other.hist
            self._sync_exact()
        elif other.count:
            self._merge(other.count, other.mean, other.m2, other.min, other.max)
            self.hist += other.hist
        return self

    def percentile(self, q: float) -> float:
        """The ``q``-th percentile (0-100) of the valid values."""
        self._sync_exact()
        if self.count == 0:
            return float("nan")
        cum = np.cumsum(self.hist)
        key = int(np.searchsorted(cum, q / 100.0 * (cum[-1] - 1), side="right"))
        if self.exact:
            return float(key - self.offset)
        lo, hi = _float_key_bounds(np.array([key]))
        return float(np.clip((lo[0] + hi[0]) / 2, self.min, self.max))

    def summary(self) -> dict[str, int | float]:
        """Mean, std, min, max, p0.5, p2, p98, p99.5 and count, JSON-ready."""
        self._sync_exact()
        std = float(np.sqrt(self.m2 / self.count)) if self.count else float("nan")
        return {
            "count": self.count,
            "mean": self.mean if self.count else float("nan"),
            "std": std,
            "min": self.min if self.count else float("nan"),
            "max": self.max if self.count else float("nan"),
            "p0_5": self.percentile(0.5),
            "p2": self.percentile(2),
            "p98": self.percentile(98),
            "p99_5": self.percentile(99.5),
        }

    def to_state(self) -> dict[str, Any]:
        """Serialisable state; the histogram is stored sparsely."""
        self._sync_exact()
        nz = np.flatnonzero(self.hist)
        return {
            "exact": self.exact,
            "offset": self.offset,
            "count": self.count,
            "mean": self.mean,
            "m2": self.m2,
            "min": self.min,
            "max": self.max,
            "hist_bins": nz.tolist(),
            "hist_counts": self.hist[nz].tolist(),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> BandStats:
        """Inverse of :meth:`to_state`."""
        s = cls(
            exact=state["exact"],
            offset=state["offset"],
            count=state["count"],
            mean=state["mean"],
            m2=state["m2"],
            min=state["min"],
            max=state["max"],
        )
        s.hist[np.asarray(state["hist_bins"], dtype=np.int64)] = state["hist_counts"]
        return s


def merge_states(states: list[dict[str, Any]]) -> dict[str, Any]:
    """Merge several serialised BandStats into one."""
    merged = BandStats.from_state(states[0])
    for st in states[1:]:
        merged.merge(BandStats.from_state(st))
    return merged.to_state()


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
