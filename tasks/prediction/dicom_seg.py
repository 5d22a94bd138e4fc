"""A class map of a DICOM input as a DICOM Segmentation (SEG) object, written with highdicom.

The SEG references the source instances (a series' slices, or a file's frames), so a PACS
stores it beside the series and a viewer lays it over the same frames. Each class is one
segment (BINARY frames; voxels without data belong to none), and the map's lineage is kept
in a private element, so that a rerun recognises what it wrote.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tessera.tasks.base.files import save_by_rename
from tessera.tasks.prediction.cog import CLASS_NODATA
from tessera.tasks.sources.refusals import BadInputError

SEG_SUFFIX = "_seg.dcm"
PRIVATE_GROUP = 0x0071
PRIVATE_CREATOR = "TESSERA"
_LINEAGE_ELEMENT = 0x01
# what the SEG takes from each source instance: its identity, and the geometry that puts the
# segment frames on the source frames
NEEDED_TAGS = (
    "SOPClassUID",
    "SOPInstanceUID",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "FrameOfReferenceUID",
    "Rows",
    "Columns",
)
_GEOMETRY_TAGS = ("ImageOrientationPatient", "ImagePositionPatient", "PixelSpacing")


def _has(ds: Any, keyword: str) -> bool:
    """``keyword`` in the dataset, or (enhanced multi-frame) in its functional groups."""
    from tessera.tasks.sources.dicom import _first

    groups = ("PlaneOrientationSequence", "PlanePositionSequence", "PixelMeasuresSequence")
    value = _first(ds, keyword, groups)
    return value is not None and value != ""


def check_seg_source(path: Path) -> None:
    """Refuse in one line, before any map is written, a DICOM input whose instances lack a
    tag that a SEG needs (it names the first file and tag)."""
    from tessera.tasks.sources.dicom import source_frames

    for file, ds in source_frames(path)[0]:
        missing = [k for k in (*NEEDED_TAGS, *_GEOMETRY_TAGS) if not _has(ds, k)]
        if missing:
            raise BadInputError(
                file, f"no {', '.join(missing)}: a DICOM SEG cannot reference this instance"
            )


def seg_path(classes: Path) -> Path:
    """``<scene>_seg.dcm`` beside ``<scene>_classes.nii.gz``."""
    return classes.with_name(classes.name.removesuffix("_classes.nii.gz") + SEG_SUFFIX)


def _source_order(classes_ras: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """A RAS-ordered (X, Y, Z) map back in the (column, row, frame) order of the DICOM array
    whose affine is ``affine`` (what :func:`tessera.tasks.sources.volume.to_ras` did, undone)."""
    import nibabel.orientations as nio

    back = nio.ornt_transform(nio.axcodes2ornt(("R", "A", "S")), nio.io_orientation(affine))
    return np.asarray(nio.apply_orientation(classes_ras, back))


def build_seg(
    classes_ras: np.ndarray,
    source: Path,
    class_names: Sequence[str],
    lineage: dict[str, str],
) -> Any:
    """The SEG dataset of a RAS-ordered class map (uint8, :data:`CLASS_NODATA` without data)
    of the DICOM file or series folder ``source``. Built whole in memory, so that a source
    highdicom refuses fails before any file is written."""
    import highdicom as hd
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    from tessera.tasks.sources.dicom import source_frames

    slices, affine = source_frames(source)
    columns_rows_frames = _source_order(classes_ras, affine)
    labels = np.where(columns_rows_frames == CLASS_NODATA, 0, columns_rows_frames + 1)
    frames = np.ascontiguousarray(labels.transpose(2, 1, 0)).astype(np.uint8)
    datasets = [ds for _, ds in slices]
    n_source = sum(int(ds.get("NumberOfFrames", 1) or 1) for ds in datasets)
    if frames.shape[0] != n_source:
        raise BadInputError(source, f"{frames.shape[0]} map frames for {n_source} source frames")
    version = lineage.get("tessera_model_version", "") or "unversioned"
    algorithm = hd.AlgorithmIdentificationSequence(
        name=f"Tessera {lineage.get('tessera_model', '')}"[:64],
        version=version[:64],
        family=codes.cid7162.ArtificialIntelligence,
    )
    segments = [
        hd.seg.SegmentDescription(
            segment_number=k + 1,
            segment_label=name[:64],
            segmented_property_category=codes.SCT.Tissue,
            segmented_property_type=codes.SCT.Tissue,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
        )
        for k, name in enumerate(class_names)
    ]
    try:
        seg = hd.seg.Segmentation(
            source_images=datasets,
            pixel_array=frames if len(datasets) > 1 or n_source > 1 else frames[0],
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=segments,
            series_instance_uid=generate_uid(),
            series_number=9000,
            sop_instance_uid=generate_uid(),
            instance_number=1,
            manufacturer="Tessera",
            manufacturer_model_name=lineage.get("tessera_model", "")[:64] or "Tessera",
            software_versions=lineage.get("tessera_version", "") or "tessera",
            device_serial_number="0",
            content_label="TESSERA",
            content_description=f"tessera {lineage.get('tessera_model', '')}"[:64],
            omit_empty_frames=False,
        )
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        reason = " ".join(str(exc).split())[:200]
        raise BadInputError(source, f"highdicom cannot build a SEG of it: {reason}") from None
    block = seg.private_block(PRIVATE_GROUP, PRIVATE_CREATOR, create=True)
    block.add_new(_LINEAGE_ELEMENT, "UT", json.dumps(lineage | {"classes": ",".join(class_names)}))
    return seg


def write_seg(seg: Any, path: Path) -> Path:
    """Save ``seg`` at ``path`` through a temporary file."""
    return save_by_rename(path, ".tmp.dcm", lambda tmp: seg.save_as(tmp, enforce_file_format=True))


def read_seg_lineage(path: Path) -> dict[str, str]:
    """The lineage of a SEG Tessera wrote ({} for any other file)."""
    try:
        import pydicom

        ds = pydicom.dcmread(path, stop_before_pixels=True)
        block = ds.private_block(PRIVATE_GROUP, PRIVATE_CREATOR)
        data = json.loads(block[_LINEAGE_ELEMENT].value)
    except Exception:
        return {}
    return data if isinstance(data, dict) and "tessera_model" in data else {}
