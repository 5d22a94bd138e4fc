"""Per-pixel class labels from masks, vectors, QA bits and probability maps.

Labels are uint8 class ids; :data:`~tessera.tasks.store.format.IGNORE` marks pixels without
a label (fill, nodata, padding).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from tessera.tasks.sources.refusals import BadInputError
from tessera.tasks.sources.specs import LabelSpec
from tessera.tasks.store.format import IGNORE


def qa_bits_to_classes(qa: np.ndarray, spec: LabelSpec) -> np.ndarray:
    """Apply bit rules: the first matching rule wins, else class 0; ``fill_bit`` → ignore."""
    q = qa.astype(np.uint64, copy=False)
    out = np.zeros(qa.shape, dtype=np.uint8)
    decided = np.zeros(qa.shape, dtype=bool)
    if spec.fill_bit is not None:
        fill = ((q >> np.uint64(spec.fill_bit)) & np.uint64(1)).astype(bool)
        out[fill] = IGNORE
        decided |= fill
    for rule in spec.rules:
        lo, hi = rule.bits
        field = (q >> np.uint64(lo)) & np.uint64((1 << (hi - lo + 1)) - 1)
        hit = (field >= rule.min) & ~decided
        out[hit] = spec.classes.index(rule.cls)
        decided |= hit
    return out


def probs_to_classes(maps: np.ndarray, threshold: float) -> np.ndarray:
    """(K, ...) probability maps → class ids: argmax + 1 where its probability ≥ threshold, else 0.

    Integer maps are scaled by their dtype's maximum (uint8 255 → 1.0).
    """
    m = maps.astype(np.float32)
    if maps.dtype.kind in "iu":
        m /= float(np.iinfo(maps.dtype).max)
    best = m.argmax(axis=0)
    top = np.take_along_axis(m, best[None], axis=0)[0]
    out = np.where(top >= threshold, best + 1, 0).astype(np.uint8)
    out[np.isnan(top)] = IGNORE
    return out


def mask_to_classes(
    mask: np.ndarray, nodata: float | None, n_classes: int, path: Path
) -> np.ndarray:
    """Class-id raster → uint8 ids; nodata → ignore; ids beyond the class list are refused."""
    bad = np.isnan(mask) if mask.dtype.kind == "f" else np.zeros(mask.shape, bool)
    if nodata is not None:
        bad |= mask == nodata
    vals = mask[~bad]
    if vals.size and (vals.min() < 0 or vals.max() >= n_classes):
        raise BadInputError(
            path, f"label values {vals.min()}..{vals.max()} outside the {n_classes} classes"
        )
    out = np.where(bad, IGNORE, mask).astype(np.uint8)
    return out


def load_geojson(
    path: Path, class_property: str, classes: list[str]
) -> tuple[list[tuple[dict[str, Any], int]], str | None]:
    """(geometry, class id) pairs and the file's CRS (None means WGS84, per RFC 7946)."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise BadInputError(path, f"not a readable GeoJSON ({type(exc).__name__})") from None
    feats = doc.get("features") if isinstance(doc, dict) else None
    if not isinstance(feats, list):
        raise BadInputError(path, "GeoJSON has no 'features' list")
    crs = (doc.get("crs") or {}).get("properties", {}).get("name")
    shapes = []
    for f in feats:
        value = (f.get("properties") or {}).get(class_property)
        if f.get("geometry") is None:
            continue
        if isinstance(value, str):
            if value not in classes:
                raise BadInputError(path, f"feature class {value!r} not in {classes}")
            cid = classes.index(value)
        elif isinstance(value, int) and 0 <= value < len(classes):
            cid = value
        else:
            raise BadInputError(path, f"feature without a valid {class_property!r} property")
        shapes.append((f["geometry"], cid))
    if not shapes:
        raise BadInputError(path, "GeoJSON holds no labelled features")
    return shapes, crs
