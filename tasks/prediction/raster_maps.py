"""Maps of a whole raster scene: read as ``tessera tile`` reads it, stitched out of core, written
as Cloud-Optimised GeoTIFFs on the scene's exact grid (or, for a model that answers per
window, on the window-stride grid of the cluster maps)."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.windows import Window

from tessera.tasks.prediction.cog import (
    BLOCK,
    CLASS_NODATA,
    Bands,
    BlockWriter,
    class_colours,
    cog_writer,
)
from tessera.tasks.prediction.stitching import (
    Predictor,
    Stitching,
    probability_bytes,
    stitch_plane,
)
from tessera.tasks.sources.raster import Grid
from tessera.tasks.store.stats import valid_values
from tessera.tasks.tiling.scene import RasterScene, VolumeScene

Normaliser = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (C,h,w) values, (h,w) valid


@dataclass(frozen=True)
class MapFiles:
    """The files one scene's prediction writes: the class map, and optionally the per-class
    probabilities (uint8, p·255, pixels without a value masked), the reconstruction in source
    units and the anomaly map (mean absolute reconstruction error over the bands, in the
    normalised units the model reads; both float32, nodata NaN), and a DICOM input's class
    map as a DICOM SEG."""

    classes: Path
    probabilities: Path | None = None
    reconstruction: Path | None = None
    anomaly: Path | None = None
    segmentation: Path | None = None

    def paths(self) -> list[Path]:
        """The files, in that order, those asked for only."""
        every = (
            self.classes,
            self.probabilities,
            self.reconstruction,
            self.anomaly,
            self.segmentation,
        )
        return [p for p in every if p is not None]


@dataclass(frozen=True)
class Reconstruction:
    """What reconstruction maps need: the model's band names, and its normalisation both ways."""

    bands: list[str]
    normalise: Normaliser
    shift: np.ndarray  # (C, 1, 1): source = normalised · scale + shift
    scale: np.ndarray


def scene_valid(
    scene: RasterScene | VolumeScene, r: int, c: int, h: int, w: int, plane: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """A window of a scene's plane: its source values and the pixels that have data (no band
    nodata or NaN, and opaque in the files' alpha bands or internal masks), as the tiler
    judges them."""
    window = scene.read(plane, r, c, h, w)
    ok = np.asarray(valid_values(window, scene.rec.nodata).all(axis=0))
    mask = scene.read_valid(plane, r, c, h, w)
    return window, ok if mask is None else ok & mask


@dataclass(frozen=True)
class Scorer:
    """The model as a map calls it.

    Args:
        predict: Class probabilities of a batch of normalised windows (N, C, s, s): (N, K, s, s)
            for a per-pixel model, (N, K) for one that answers once per window.
        normalise: Source values and valid pixels of a window to the model's input units.
        class_names: The K classes, in score order.
        reconstruction: With the reconstruction's channels after the K probabilities that
            ``predict`` returns, the reconstruction and anomaly maps are written too.
    """

    predict: Predictor
    normalise: Normaliser
    class_names: Sequence[str]
    reconstruction: Reconstruction | None = None


@dataclass(frozen=True)
class Cells:
    """The grid of a per-window map: a window of ``size`` pixels every ``stride`` pixels
    (one cell each), ``batch_size`` windows per call of the model."""

    size: int
    stride: int
    batch_size: int = 16


class StripReader:
    """The windows of one row of windows, cut from the whole-width strip of rows, read and
    normalised once (a pointwise normalisation, so each window equals a window read alone):
    one read of the scene per row of windows instead of one per window.

    The last two strips are kept, so that the rows a writer finishes come back from memory
    (:meth:`rows`) while the next strip is read in the reader's thread; the files are only
    ever read under one lock.
    """

    def __init__(
        self, scene: RasterScene | VolumeScene, normalise: Normaliser, plane: int = 0
    ) -> None:
        self.scene, self.normalise, self.plane = scene, normalise, plane
        self._lock = threading.Lock()
        # (first row, rows) -> (source values, valid, normalised), the newest last
        self._strips: dict[tuple[int, int], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def _strip(self, r: int, h: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        got = self._strips.get((r, h))
        if got is None:
            with self._lock:
                width = self.scene.plane_shape[1]
                values, ok = scene_valid(self.scene, r, 0, h, width, self.plane)
            got = (values, ok, self.normalise(values, ok))
            self._strips[(r, h)] = got
            while len(self._strips) > 2:
                self._strips.pop(next(iter(self._strips)))
        return got

    def __call__(self, r: int, c: int, h: int, w: int) -> np.ndarray:
        """The normalised (C, h, w) window at (r, c)."""
        return self._strip(r, h)[2][:, :, c : c + w]

    def rows(self, first: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Source values (C, n, width) and valid pixels (n, width) of rows [first, stop):
        from a kept strip that holds them, else read (under the lock)."""
        for (r, h), (values, ok, _) in list(self._strips.items()):
            if r <= first and stop <= r + h:
                return values[:, first - r : stop - r], ok[first - r : stop - r]
        with self._lock:
            width = self.scene.plane_shape[1]
            return scene_valid(self.scene, first, 0, stop - first, width, self.plane)


IMAGE_PIXELS = 1 << 24  # per-image statistics read at most about this many pixels


def image_pieces(
    scene: RasterScene | VolumeScene, strip_rows: int = 256
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """A whole scene as (values, valid) pieces for per-image statistics: every plane of a
    volume in full, strips of rows of a raster; past :data:`IMAGE_PIXELS` every k-th strip."""
    height, width = scene.plane_shape
    starts = [(p, r) for p in range(scene.n_planes) for r in range(0, height, strip_rows)]
    every = max(1, math.ceil(scene.n_planes * height * width / IMAGE_PIXELS))
    for p, r in starts[::every]:
        yield scene_valid(scene, r, 0, min(strip_rows, height - r), width, p)


def cell_window(
    scene: RasterScene | VolumeScene,
    r: int,
    c: int,
    size: int,
    normalise: Normaliser,
    plane: int = 0,
) -> tuple[np.ndarray, bool]:
    """The ``size`` window starting at (r, c) in the model's units, zero-padded past the
    plane's edge, and whether any of its pixels has data (a per-window model's cell)."""
    height, width = scene.plane_shape
    h, w = min(size, height - r), min(size, width - c)
    values, valid = scene_valid(scene, r, c, h, w, plane)
    x = np.zeros((values.shape[0], size, size), dtype=np.float32)
    x[:, :h, :w] = normalise(values, valid)
    return x, bool(valid.any())


def _class_tags(class_names: Sequence[str]) -> dict[str, str]:
    return {f"class_{i}": n for i, n in enumerate(class_names)} | {"classes": ",".join(class_names)}


RowWriter = Callable[[int, np.ndarray, np.ndarray, np.ndarray | None], None]
# (first row, (K [+ C], n, width) scores, (n, width) valid, (C, n, width) source values or None)


def _writers(
    stack: ExitStack,
    files: MapFiles,
    grid: Grid,
    class_names: Sequence[str],
    tags: dict[str, str],
    reconstruction: Reconstruction | None,
    cog: bool,
) -> dict[str, BlockWriter]:
    """The open writers of ``files`` by kind: ``classes``, and those asked for of
    ``probabilities``, ``reconstruction``, ``anomaly``."""
    meta = tags | _class_tags(class_names)
    k = len(class_names)
    classes = Bands(1, "uint8", CLASS_NODATA, ["class"], class_colours(k))
    writers = {"classes": stack.enter_context(cog_writer(files.classes, grid, classes, meta, cog))}
    if files.probabilities is not None:
        probabilities = Bands(k, "uint8", None, list(class_names), overview_resampling="average")
        writers["probabilities"] = stack.enter_context(
            cog_writer(files.probabilities, grid, probabilities, meta, cog)
        )
    if files.reconstruction is not None and reconstruction is not None:
        bands = reconstruction.bands
        values = Bands(len(bands), "float32", float("nan"), bands, overview_resampling="average")
        writers["reconstruction"] = stack.enter_context(
            cog_writer(files.reconstruction, grid, values, tags, cog)
        )
    if files.anomaly is not None and reconstruction is not None:
        error = Bands(1, "float32", float("nan"), ["mean_abs_error"], overview_resampling="average")
        writers["anomaly"] = stack.enter_context(cog_writer(files.anomaly, grid, error, tags, cog))
    return writers


def write_maps(
    files: MapFiles,
    grid: Grid,
    class_names: Sequence[str],
    tags: dict[str, str],
    rows: Callable[[RowWriter], None],
    reconstruction: Reconstruction | None = None,
    cog: bool = True,
) -> list[Path]:
    """Open the COGs of ``files`` on ``grid`` (plain tiled GeoTIFFs without ``cog``) and let
    ``rows`` feed them band by band of rows: probabilities first, then (with
    ``reconstruction``) the reconstruction's channels."""
    k = len(class_names)
    with ExitStack() as stack:
        w = _writers(stack, files, grid, class_names, tags, reconstruction, cog)

        def write(row: int, scores: np.ndarray, ok: np.ndarray, values: np.ndarray | None) -> None:
            probs = scores[:k]
            best = probs.argmax(axis=0).astype(np.uint8)
            w["classes"].write(row, np.where(ok, best, CLASS_NODATA)[None])
            if "probabilities" in w:
                scaled = probability_bytes(probs)
                w["probabilities"].write(row, np.where(ok[None], scaled, 0), ok)
            if reconstruction is None or values is None:
                return
            out = scores[k:]
            if "reconstruction" in w:
                source = out * reconstruction.scale + reconstruction.shift
                w["reconstruction"].write(
                    row, np.where(ok[None], source, np.nan).astype(np.float32)
                )
            if "anomaly" in w:
                error = np.abs(out - reconstruction.normalise(values, ok)).mean(axis=0)
                w["anomaly"].write(row, np.where(ok, error, np.nan).astype(np.float32)[None])

        rows(write)
    return files.paths()


def assemble_maps(
    pieces: Sequence[tuple[int, MapFiles]],
    files: MapFiles,
    grid: Grid,
    class_names: Sequence[str],
    tags: dict[str, str],
    reconstruction: Reconstruction | None = None,
) -> list[Path]:
    """The COGs of a scene mapped in bands of rows, copied block by block from each band's
    pieces (their first row, their files), in order; the pieces are removed after."""
    with ExitStack() as stack:
        w = _writers(stack, files, grid, class_names, tags, reconstruction, cog=True)
        for first, piece in pieces:
            for kind, writer in w.items():
                with rasterio.open(getattr(piece, kind)) as src:
                    for r in range(0, src.height, BLOCK):
                        win = Window(0, r, src.width, min(BLOCK, src.height - r))
                        masked = kind == "probabilities"
                        valid = src.read_masks(1, window=win) > 0 if masked else None
                        writer.write(first + r, src.read(window=win), valid)
    for _, piece in pieces:
        for path in piece.paths():
            path.unlink(missing_ok=True)
    return files.paths()


def band_grid(grid: Grid, rows: tuple[int, int]) -> Grid:
    """The grid of rows [first, stop) of ``grid``."""
    moved = grid.affine * Affine.translation(0, rows[0])
    return Grid(grid.crs_wkt, tuple(moved)[:6], rows[1] - rows[0], grid.width)


def predict_raster_pixels(
    scene: RasterScene,
    files: MapFiles,
    scorer: Scorer,
    stitching: Stitching,
    tags: dict[str, str] | None = None,
    on_row: Callable[[], None] | None = None,
    rows: tuple[int, int] | None = None,
) -> list[Path]:
    """Per-pixel class maps: the argmax of the blended scores, uint8, nodata 255 where the input
    has no data; the scene's CRS, transform, width and height.

    Args:
        scene: The scene, opened as ``tessera tile`` opens it (bands stacked on the grid).
        files: The COGs to write (each replaced only once it is complete).
        scorer: The model, answering (N, K, s, s) per batch (then the reconstruction's
            channels, where it has one: ``files.reconstruction`` and ``files.anomaly``).
        stitching: The windows: size, overlap, blending, batch size.
        tags: Lineage written into the files' metadata.
        on_row: Called after each row of windows.
        rows: Only the rows [first, stop), into plain tiled GeoTIFFs on their own grid: one
            band of a scene mapped in bands (:func:`assemble_maps` makes the COGs).
    """
    height, width = scene.plane_shape
    class_names, reconstruction = scorer.class_names, scorer.reconstruction
    channels = len(class_names) + (len(reconstruction.bands) if reconstruction else 0)
    first, stop = rows or (0, height)

    read = StripReader(scene, scorer.normalise)

    def fill(write: RowWriter) -> None:
        def stitched(row: int, scores: np.ndarray) -> None:
            if on_row is not None:
                on_row()
            lo, hi = max(row, first), min(row + scores.shape[1], stop)  # the band's own rows
            if lo >= hi:
                return
            values, ok = read.rows(lo, hi)
            write(lo - first, scores[:, lo - row : hi - row], ok, values)

        plane = (height, width)
        stitch_plane(read, scorer.predict, stitched, plane, channels, stitching, rows)

    grid = scene.grid if rows is None else band_grid(scene.grid, rows)
    return write_maps(files, grid, class_names, tags or {}, fill, reconstruction, rows is None)


def predict_raster_windows(
    scene: RasterScene,
    files: MapFiles,
    scorer: Scorer,
    cells: Cells,
    tags: dict[str, str] | None = None,
    on_row: Callable[[], None] | None = None,
) -> list[Path]:
    """Per-window class maps for a model that answers once per window (N, K): one pixel per
    ``stride`` (the cluster maps' grid), the window starting at that pixel; a window without
    any valid pixel is nodata. The map's transform is the scene's scaled by ``stride``.

    Args:
        scene: The scene, opened as ``tessera tile`` opens it.
        files: The COGs to write.
        scorer: The model, answering (N, K) per batch.
        cells: The windows (the model's tile size), the pixels between their starts and
            how many windows go to the model per call.
        tags: Lineage written into the files' metadata.
        on_row: Called after each row of cells.
    """
    height, width = scene.plane_shape
    size, stride, batch_size = cells.size, cells.stride, cells.batch_size
    class_names, normalise, predict = scorer.class_names, scorer.normalise, scorer.predict
    n_rows, n_cols = math.ceil(height / stride), math.ceil(width / stride)
    a = scene.grid.affine @ Affine.scale(stride)
    grid = Grid(scene.grid.crs_wkt, tuple(a)[:6], n_rows, n_cols)
    k = len(class_names)

    def cell_row(i: int) -> tuple[np.ndarray, np.ndarray]:
        probs = np.zeros((k, 1, n_cols), dtype=np.float32)
        ok = np.zeros((1, n_cols), dtype=bool)
        starts = list(range(n_cols))
        for b in range(0, n_cols, batch_size):
            batch, windows = starts[b : b + batch_size], []
            for j in batch:
                x, ok[0, j] = cell_window(scene, i * stride, j * stride, size, normalise)
                windows.append(x)
            probs[:, 0, batch] = np.asarray(predict(np.stack(windows)), dtype=np.float32).T
        return probs, ok

    def rows(write: RowWriter) -> None:
        for i in range(n_rows):
            write(i, *cell_row(i), None)
            if on_row is not None:
                on_row()

    return write_maps(files, grid, class_names, (tags or {}) | {"cell_pixels": str(stride)}, rows)
