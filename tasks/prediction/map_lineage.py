"""The lineage a map of ``tessera predict`` carries: read back, and compared between maps."""

from __future__ import annotations

from pathlib import Path

INPUT_TAG = "tessera_input_sha256"
# the lineage that says which model made a map from which input
SAME_RUN = ("tessera_model", "tessera_model_version", INPUT_TAG)


def read_lineage(path: Path) -> dict[str, str]:
    """The lineage in a map Tessera wrote ({} for any other file)."""
    if path.name.endswith(".nii.gz"):
        from tessera.tasks.prediction.volume_maps import read_lineage as nifti_lineage

        return nifti_lineage(path)
    if path.name.endswith(".dcm"):
        from tessera.tasks.prediction.dicom_seg import read_seg_lineage

        return read_seg_lineage(path)
    import rasterio

    try:
        with rasterio.open(path) as ds:
            tags = ds.tags()
    except Exception:
        return {}
    return dict(tags) if "tessera_model" in tags else {}


def is_prediction(path: Path) -> bool:
    """A map written by ``tessera predict``."""
    return bool(read_lineage(path))


def same_run(path: Path, lineage: dict[str, str]) -> bool:
    """Whether the map at ``path`` was made by the model version, from the input, that
    ``lineage`` names."""
    theirs = read_lineage(path)
    return all(k in lineage and theirs.get(k) == lineage[k] for k in SAME_RUN)
