"""A synthetic held-out Landsat 8 scene: the sample scene's ground as another acquisition
delivers it, with its CFMask labels carried onto the same grid.

No second labelled Landsat 8 scene ships in any package reachable here, so the held-out
scene is made as the held-out brain is: what the training never saw is changed, and the
labels follow exactly.

- **The grid.** Every band is reprojected into the neighbouring UTM zone (EPSG:32615, as a
  product of the neighbouring path is delivered): the pixels turn by about 3° and no
  longer fall on the training grid. Bilinear for the bands (B8 keeps its 15 m), nearest for
  BQA, whose bits are the labels; outside the old footprint the bands are 0 (nodata) and
  BQA is 1 (designated fill).
- **The radiometry.** A lower sun (the reflective bands × 0.85), haze (an offset that falls
  from the coastal band to the red), a cooler day (the thermal bands 250 DN lower), and
  sensor noise (sd 40 DN).

It is the same ground, so it tests the grid and the radiometry, not new land cover.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

DST_CRS = "EPSG:32615"
RESOLUTION = 30.0
SUN_GAIN = 0.85
HAZE_DN = {"B1": 900.0, "B2": 700.0, "B3": 450.0, "B4": 250.0}
THERMAL = ("B10", "B11")
THERMAL_SHIFT_DN = -250.0
NOISE_DN = 40.0
LABEL_BAND = "BQA"
FILL = 1  # BQA bit 0: designated fill


def resensed(band: str, dn: np.ndarray, valid: np.ndarray, rng: np.random.Generator) -> Any:
    """A band's DNs (float) under the new acquisition, as uint16; 0 where not ``valid``."""
    if band in THERMAL:
        values = dn + THERMAL_SHIFT_DN
    else:
        values = dn * SUN_GAIN + HAZE_DN.get(band, 0.0)
    values = values + rng.normal(0.0, NOISE_DN, dn.shape)
    return np.where(valid, np.clip(np.rint(values), 1, 65535), 0).astype(np.uint16)


def _band(path: Path) -> str:
    match = re.search(r"_(B\d+|BQA)\.tif$", path.name)
    if match is None:
        raise ValueError(f"{path}: not a Landsat 8 band file (…_B<n>.tif or …_BQA.tif)")
    return match.group(1)


def write_synthetic_scene(src: Path, out: Path, seed: int = 11) -> list[Path]:
    """Write every ``l8_*.tif`` of ``src`` into ``out`` as the new acquisition (atomically,
    file by file); returns the files written, in name order."""
    import rasterio
    from rasterio.warp import Resampling, calculate_default_transform, reproject

    files = sorted(src.glob("l8_*.tif"))
    with rasterio.open(src / f"l8_{LABEL_BAND}.tif") as ref:
        transform, width, height = calculate_default_transform(
            ref.crs, DST_CRS, ref.width, ref.height, *ref.bounds, resolution=RESOLUTION
        )
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in files:
        band = _band(path)
        with rasterio.open(path) as ds:
            zoom = max(1, round(RESOLUTION / ds.res[0]))  # B8: 15 m, twice the pixels
            shape = (height * zoom, width * zoom)
            dst_transform = transform @ transform.scale(1 / zoom, 1 / zoom)
            label = band == LABEL_BAND
            dst = np.full(shape, FILL if label else 0, dtype=np.float32)
            reproject(
                ds.read(1).astype(np.float32),
                dst,
                src_transform=ds.transform,
                src_crs=ds.crs,
                dst_transform=dst_transform,
                dst_crs=DST_CRS,
                resampling=Resampling.nearest if label else Resampling.bilinear,
                src_nodata=None,
                dst_nodata=None,
            )
            inside = np.ones(ds.shape, dtype=np.float32)
            covered = np.zeros(shape, dtype=np.float32)
            reproject(
                inside,
                covered,
                src_transform=ds.transform,
                src_crs=ds.crs,
                dst_transform=dst_transform,
                dst_crs=DST_CRS,
                resampling=Resampling.nearest,
            )
            valid = covered > 0.5
            data = (
                np.where(valid, dst, FILL).astype(np.uint16)
                if label
                else resensed(band, dst, valid, rng)
            )
            profile = {
                "driver": "GTiff",
                "dtype": "uint16",
                "count": 1,
                "width": shape[1],
                "height": shape[0],
                "crs": DST_CRS,
                "transform": dst_transform,
                "compress": "deflate",
                "predictor": 2,
            }
        target = out / path.name
        tmp = out / f".{path.name}.tmp"
        with rasterio.open(tmp, "w", **profile) as dst_ds:
            dst_ds.write(data, 1)
        tmp.replace(target)
        written.append(target)
    return written
