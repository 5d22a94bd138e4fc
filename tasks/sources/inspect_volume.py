"""Inspection of NIfTI and DICOM sources: one record per volume, labels on its grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tessera.tasks.sources.bids import bids_images, image_spec
from tessera.tasks.sources.paths import as_url, display_path, is_remote, sha256_file
from tessera.tasks.sources.records import (
    SceneRecord,
    guess_kind,
    label_classes,
    label_paths,
    resolved_label_json,
    source_files,
    unexpected,
)
from tessera.tasks.sources.refusals import BadInputError
from tessera.tasks.sources.specs import SourceSpec
from tessera.tasks.sources.volume import check_dicom_header, check_nifti_header, load_volume
from tessera.tasks.store.stats import valid_values


def inspect_volume_source(
    spec: SourceSpec, base: Path, errors: list[BadInputError]
) -> list[SceneRecord]:
    """Validate a NIfTI, DICOM or BIDS source and describe each volume."""
    if spec.kind == "bids":
        return _inspect_bids(spec, base, errors)
    files = source_files(spec, base)
    check = check_nifti_header if spec.kind == "nifti" else check_dicom_header
    records = []
    for f in files:
        try:
            if is_remote(f):
                raise BadInputError(
                    as_url(f), f"{spec.kind} is read from local files only; copy it here first"
                )
            check(f)
            records.append(_inspect_volume(spec, base, f, len(files)))
        except BadInputError as exc:
            errors.append(exc)
        except Exception as exc:  # a reader's own error still deserves one line, not a crash
            errors.append(unexpected(f, exc))
    return records


def _inspect_bids(spec: SourceSpec, base: Path, errors: list[BadInputError]) -> list[SceneRecord]:
    """A BIDS dataset's images as NIfTI records, each named by its BIDS file name and
    carrying its participant as the subject the split keeps whole."""
    records = []
    for image in bids_images(spec, base):
        try:
            check_nifti_header(image.path)
            rec = _inspect_volume(image_spec(spec, image), base, image.path, 2)
            scene = f"{spec.name}/{image.stem}"
            records.append(rec.model_copy(update={"scene_id": scene, "subject": image.subject}))
        except BadInputError as exc:
            errors.append(exc)
        except Exception as exc:
            errors.append(unexpected(image.path, exc))
    return records


def _inspect_volume(spec: SourceSpec, base: Path, f: Path, n_files: int) -> SceneRecord:
    vol = load_volume(f, spec.kind)
    valid = int(valid_values(vol.array, spec.nodata).all(axis=0).sum())
    if valid == 0:
        what = "NaN" if spec.nodata is None else f"nodata ({spec.nodata:g}) or NaN"
        raise BadInputError(f, f"volume is all {what}: no valid voxel")
    label_files: list[Path] = []
    classes: list[str] = []
    label_json = None
    if spec.label:
        label_files = label_paths(spec.label, base)
        mx = 0
        for lf in label_files:
            lv = load_volume(lf, guess_kind(lf))
            if lv.array.shape[1:] != vol.array.shape[1:] or not np.allclose(
                lv.affine, vol.affine, atol=1e-4
            ):
                raise BadInputError(
                    lf,
                    f"label extent mismatch: shape {lv.array.shape[1:]} "
                    f"affine {np.round(lv.affine, 3).tolist()} differs from "
                    f"image {vol.array.shape[1:]}",
                )
            if spec.label.kind == "raster":
                mx = int(np.nanmax(lv.array))
        classes = label_classes(spec.label, label_files, mx)
        label_json = resolved_label_json(spec.label, label_files, classes, base)
    a = vol.affine
    corners = (
        np.array(
            [
                [i, j, k, 1]
                for i in (0, vol.array.shape[1] - 1)
                for j in (0, vol.array.shape[2] - 1)
                for k in (0, vol.array.shape[3] - 1)
            ],
            dtype=np.float64,
        )
        @ a.T
    )
    stem = f.name.split(".")[0]
    sid = spec.name if n_files == 1 else f"{spec.name}/{stem}"
    return SceneRecord(
        scene_id=sid,
        source=spec.name,
        kind=spec.kind,
        files=[display_path(f, base)],
        sha256=[sha256_file(f)],
        band_names=spec.bands or [f"c{i}" for i in range(vol.array.shape[0])]
        if vol.array.shape[0] > 1
        else (spec.bands or ["intensity"]),
        shape=list(vol.array.shape),
        dtype=str(vol.array.dtype),
        affine=a.reshape(-1).tolist(),
        resolution=list(vol.spacing),
        bounds=[*corners[:, :3].min(0), *corners[:, :3].max(0)],
        nodata=spec.nodata,
        label_kind=spec.label.kind if spec.label else None,
        label_files=[display_path(p, base) for p in label_files],
        label_sha256=[sha256_file(p) for p in label_files],
        class_names=classes,
        label_spec=label_json,
        valid_fraction=valid / float(np.prod(vol.array.shape[1:])),
    )
