"""One scene or volume through a model: checked against its descriptor, stitched, written with
lineage; skipped when the same model version already mapped the same input."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from tessera.models.descriptor import DescriptorError, ModelDescriptor
from tessera.tasks.base.outputs import check_output_file
from tessera.tasks.prediction.dicom_seg import build_seg, check_seg_source, seg_path, write_seg
from tessera.tasks.prediction.map_lineage import INPUT_TAG, is_prediction, same_run
from tessera.tasks.prediction.model import AppliedModel, batch_predictor, resolve_device
from tessera.tasks.prediction.predict_options import PredictOptions
from tessera.tasks.prediction.raster_maps import (
    Cells,
    MapFiles,
    Reconstruction,
    Scorer,
    assemble_maps,
    image_pieces,
    predict_raster_pixels,
    predict_raster_windows,
)
from tessera.tasks.prediction.stac_items import check_stac_files
from tessera.tasks.prediction.stitching import Stitching
from tessera.tasks.sources.records import SceneRecord

PIXEL_OUTPUTS = {"class_logits"}  # the model answers per pixel: stitched at full resolution
WINDOW_OUTPUTS = {"class_probabilities", "latent_mean"}  # per window: at the window stride
MAP_PATTERNS = (
    "*_classes.tif",
    "*_probabilities.tif",
    "*_reconstruction.tif",
    "*_anomaly.tif",
    "*_classes.nii.gz",
    "*_probabilities.nii.gz",
)


def list_inputs(folder: Path, pattern: str) -> list[str]:
    """The files of ``folder`` matching ``pattern``, sorted; a missing folder is refused."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    return sorted(str(p) for p in folder.glob(pattern) if p.is_file())


def input_sha256(rec: SceneRecord) -> str:
    """One digest of the scene's files (the catalogue's per-file sha256, in order)."""
    if len(rec.sha256) == 1:
        return rec.sha256[0]
    return hashlib.sha256("".join(rec.sha256).encode()).hexdigest()


def map_files(
    rec: SceneRecord, out_dir: Path, options: PredictOptions, volume: bool, seg: bool = False
) -> MapFiles:
    """``<scene>_classes.tif`` (``.nii.gz`` for volumes), ``<scene>_probabilities``, for
    ``--reconstruction`` ``<scene>_reconstruction.tif`` and ``<scene>_anomaly.tif``, and with
    ``seg`` (a DICOM input's class map) ``<scene>_seg.dcm``."""
    stem = rec.scene_id.replace("/", "_")
    ext = ".nii.gz" if volume else ".tif"
    probs = out_dir / f"{stem}_probabilities{ext}" if options.probabilities else None
    recon = anomaly = None
    if options.reconstruction:
        recon, anomaly = out_dir / f"{stem}_reconstruction.tif", out_dir / f"{stem}_anomaly.tif"
    classes = out_dir / f"{stem}_classes{ext}"
    return MapFiles(classes, probs, recon, anomaly, seg_path(classes) if seg else None)


def writes_seg(rec: SceneRecord, d: ModelDescriptor) -> bool:
    """Whether the map of ``rec`` is also written as a DICOM SEG: a DICOM input mapped per
    voxel (a per-window map is not on the source frames)."""
    return rec.kind == "dicom" and d.is_volume and d.output in PIXEL_OUTPUTS


def check_map_files(files: MapFiles) -> MapFiles:
    """Refuse, before any work, map paths that hold anything but an earlier Tessera map."""
    for path in files.paths():
        check_output_file(path, is_prediction, "Tessera prediction map")
    return files


def plan_maps(
    records: list[SceneRecord],
    model: AppliedModel,
    options: PredictOptions,
    out_dir: Path,
    base: Path = Path(),
) -> tuple[list[SceneRecord], list[dict[str, str]]]:
    """Before any map is written: the scenes the model fits, and the rest as rejects (path,
    reason). A model without a class map to give, a map path that holds anything but an
    earlier Tessera map, or a DICOM input without the tags its SEG needs, refuses the whole
    command. ``base``: what the records' relative paths are relative to."""
    d = model.descriptor
    if d.output not in PIXEL_OUTPUTS | WINDOW_OUTPUTS:
        raise DescriptorError(
            f"{model.ref}: a {d.model_type} model answers with {d.output}; tessera predict maps "
            "classes (seg_ae, ssvae) and a vae's clusters only"
        )
    if d.output == "latent_mean" and model.centroids is None:
        raise DescriptorError(
            f"{model.ref}: no clusters.json to map this {d.model_type}'s latents with: "
            "`tessera evaluate` writes it, and `tessera register` logs it with the model"
        )
    if options.reconstruction and (model.reconstruction is None or d.is_volume):
        why = "volumes" if d.is_volume else f"this {d.model_type} model"
        raise DescriptorError(
            f"{model.ref}: --reconstruction: no reconstruction for {why} (segmentation "
            "autoencoders on rasters; a version registered before Tessera logged the "
            "reconstruction graph needs `tessera register` again)"
        )
    kept, rejected = [], []
    for rec in records:
        where = _where(rec)
        try:
            d.band_order(rec.band_names, rec.kind, where)
        except DescriptorError as exc:
            rejected.append({"path": where, "reason": str(exc).removeprefix(f"{where}: ")})
            continue
        seg = writes_seg(rec, d)
        check_map_files(map_files(rec, out_dir, options, d.is_volume, seg))
        if seg:
            check_seg_source(base / rec.files[0])
        kept.append(rec)
    if not d.is_volume:  # the STAC Items and Catalog of raster maps, checked as the maps are
        check_stac_files(out_dir, [map_files(r, out_dir, options, False).classes for r in kept])
    return kept, rejected


def _where(rec: SceneRecord) -> str:
    return rec.files[0] if len(rec.files) == 1 else f"{rec.scene_id} ({len(rec.files)} files)"


def _done(files: MapFiles, lineage: dict[str, str]) -> bool:
    return all(p.exists() and same_run(p, lineage) for p in files.paths())


def in_model_order(rec: SceneRecord, order: list[int]) -> SceneRecord:
    """The record with its bands in the model's order."""
    if order == list(range(len(order))) or not rec.band_files:
        return rec
    pick = lambda xs: [xs[i] for i in order]  # noqa: E731
    return rec.model_copy(
        update={
            "band_names": pick(rec.band_names),
            "band_files": pick(rec.band_files),
            "band_indexes": pick(rec.band_indexes),
        }
    )


BAND_PIXELS = 1 << 26  # a scene mapped per pixel larger than this is mapped in row bands
Rows = tuple[int, int]


def row_bands(rec: SceneRecord, model: AppliedModel) -> list[Rows | None]:
    """The bands of rows a scene is mapped in, each a task of its own so that one big scene
    keeps several workers busy: ``[None]`` (the whole scene) for volumes, per-window models
    and scenes up to ``BAND_PIXELS``; else bands of about that many pixels."""
    d = model.descriptor
    height, width = rec.shape[-2], rec.shape[-1]
    if d.is_volume or d.output not in PIXEL_OUTPUTS or height * width <= BAND_PIXELS:
        return [None]
    step = max(d.window, BAND_PIXELS // width)
    return [(r, min(r + step, height)) for r in range(0, height, step)]


def piece_files(files: MapFiles, rows: Rows) -> MapFiles:
    """Where one band of rows of a scene is written before the COGs are assembled."""

    def piece(p: Path) -> Path:
        return p.parent / f".{p.name}.rows-{rows[0]}-{rows[1]}.tif"

    def maybe(p: Path | None) -> Path | None:
        return None if p is None else piece(p)

    return MapFiles(
        piece(files.classes),
        maybe(files.probabilities),
        maybe(files.reconstruction),
        maybe(files.anomaly),
    )


def _fitted(rec: SceneRecord, d: ModelDescriptor, base: Path) -> ModelDescriptor:
    """``d`` fitted to the scene of ``rec`` (a per-image scheme's statistics), read whole."""
    from tessera.models.data.normalisation import per_image
    from tessera.tasks.tiling.scene import RasterScene, VolumeScene

    if not per_image(d.normalisation):
        return d
    order = d.band_order(rec.band_names, rec.kind, _where(rec))
    ordered = in_model_order(rec, order)
    scene: Any = VolumeScene(rec, base, d.axis) if d.is_volume else RasterScene(ordered, base)
    try:
        return d.for_image(image_pieces(scene))
    finally:
        scene.close()


def _reconstruction(d: ModelDescriptor, options: PredictOptions) -> Reconstruction | None:
    if not options.reconstruction:
        return None
    shift, scale = (np.asarray(v, np.float32)[:, None, None] for v in (d.shift, d.scale))
    return Reconstruction(d.bands, d.normalise, shift, scale)


def _lineage(rec: SceneRecord, model: AppliedModel) -> dict[str, str]:
    return model.lineage() | {INPUT_TAG: input_sha256(rec), "tessera_input": _where(rec)}


def predict_scene(
    rec: SceneRecord,
    base: Path,
    model: AppliedModel,
    options: PredictOptions,
    out_dir: Path,
    rows: Rows | None = None,
) -> dict[str, Any]:
    """Map one catalogued scene or volume with ``model`` (or one band of its rows,
    :func:`row_bands`, into pieces that :func:`assemble_scene` joins); returns what was
    written or skipped.

    Refuses in one line an input the model does not fit (kind, band count, band names) and a
    model whose output is not a class map.
    """
    from tessera.tasks.tiling.scene import RasterScene, VolumeScene

    d, where = model.descriptor, _where(rec)
    order = d.band_order(rec.band_names, rec.kind, where)
    files = check_map_files(map_files(rec, out_dir, options, d.is_volume, writes_seg(rec, d)))
    lineage = _lineage(rec, model)
    result: dict[str, Any] = {"scene": rec.scene_id, "files": [], "skipped": False}
    if not options.force and _done(files, lineage):
        return result | {"skipped": True, "files": [str(files.classes)]}
    if rows is not None:
        files = piece_files(files, rows)
    device = resolve_device(options.device)
    predict = batch_predictor(model, device, d.output == "class_logits", options.reconstruction)
    stitching = Stitching.for_window(d.window, options.overlap, options.blend, options.batch_size)
    if d.is_volume:
        scene: Any = VolumeScene(rec, base, d.axis)
    else:
        scene = RasterScene(in_model_order(rec, order), base)
    try:
        d = d.for_image(image_pieces(scene))  # a per-image scheme: this input's statistics
        rec_maps = _reconstruction(d, options)
        scorer = Scorer(predict, d.normalise, model.map_classes(), rec_maps)
        cells = Cells(d.window, d.stride, options.batch_size)
        if d.is_volume and d.output in PIXEL_OUTPUTS:
            source = base / rec.files[0]
            written = _volume_pixels(scene, files, scorer, stitching, lineage, source)
        elif d.is_volume:
            written = _volume_windows(scene, files, scorer, cells, lineage)
        elif d.output in PIXEL_OUTPUTS:
            height = scene.plane_shape[0] if rows is None else rows[1] - rows[0]
            with _bar(rec, height, stitching.stride) as bar:
                written = predict_raster_pixels(
                    scene, files, scorer, stitching, lineage, bar.update, rows
                )
        else:
            with _bar(rec, scene.plane_shape[0], d.stride) as bar:
                written = predict_raster_windows(scene, files, scorer, cells, lineage, bar.update)
    finally:
        scene.close()
    return result | {"files": [str(p) for p in written]}


def assemble_scene(
    rec: SceneRecord,
    model: AppliedModel,
    options: PredictOptions,
    out_dir: Path,
    bands: list[Rows],
    base: Path,
) -> dict[str, Any]:
    """The COGs of a scene mapped in ``bands`` of rows, from their pieces."""
    from tessera.tasks.sources.raster import Grid
    from tessera.tasks.tiling.scene import RasterScene

    files = map_files(rec, out_dir, options, volume=False)
    scene = RasterScene(rec, base)
    try:
        grid: Grid = scene.grid
    finally:
        scene.close()
    pieces = [(first, piece_files(files, (first, stop))) for first, stop in bands]
    written = assemble_maps(
        pieces, files, grid, model.map_classes(), _lineage(rec, model),
        _reconstruction(_fitted(rec, model.descriptor, base), options),
    )  # fmt: skip
    return {"scene": rec.scene_id, "files": [str(p) for p in written], "skipped": False}


def _bar(rec: SceneRecord, height: int, step: int) -> Any:
    total = max(1, -(-height // max(step, 1)))
    return tqdm(total=total, desc=rec.scene_id, unit="row", leave=False, disable=None)


def _volume_pixels(
    scene: Any,
    files: MapFiles,
    scorer: Scorer,
    stitching: Stitching,
    lineage: dict[str, str],
    source: Path,
) -> list[Path]:
    """The NIfTI maps of a volume (on a NIfTI input's own grid), and a DICOM input's SEG."""
    from tessera.tasks.prediction.volume_maps import predict_volume_pixels, write_volume_maps

    with tqdm(total=scene.n_planes, desc=scene.rec.scene_id, unit="slice", leave=False,
              disable=None) as bar:  # fmt: skip
        scores = predict_volume_pixels(scene, scorer, stitching, bar.update)
    seg = None
    if files.segmentation is not None:  # built before any file is written: it can refuse
        seg = build_seg(scores.classes(), source, scorer.class_names, lineage)
    own_grid = source if scene.rec.kind == "nifti" else None
    written = write_volume_maps(files, scores, scene.affine, scorer.class_names, lineage, own_grid)
    if seg is not None and files.segmentation is not None:
        written.append(write_seg(seg, files.segmentation))
    return written


def _volume_windows(
    scene: Any, files: MapFiles, scorer: Scorer, cells: Cells, lineage: dict[str, str]
) -> list[Path]:
    from tessera.tasks.prediction.volume_maps import predict_volume_windows, write_volume_maps

    scores, affine = predict_volume_windows(scene, scorer, cells)
    tags = lineage | {"cell_voxels": str(cells.stride)}
    return write_volume_maps(files, scores, affine, scorer.class_names, tags)
