"""A BIDS dataset folder as a volume source: its images (read with pybids) are NIfTI volumes,
each with its participant as the subject that the split keeps whole, and optionally its
label map from the dataset's derivatives."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tessera.tasks.sources.refusals import BadInputError
from tessera.tasks.sources.specs import BidsSpec, LabelSpec, SourceSpec

EXTENSIONS = [".nii.gz", ".nii"]


@dataclass(frozen=True)
class BidsImage:
    """One image of a BIDS dataset: its file, participant, scene name and label map."""

    path: Path
    subject: str
    stem: str
    label: Path | None


def _layout(root: Path, derivatives: bool) -> Any:
    """pybids' layout of ``root``; a folder that is not a BIDS dataset is one line."""
    if not root.is_dir():
        raise BadInputError(root, "not a folder: a bids source is a BIDS dataset folder")
    if not (root / "dataset_description.json").is_file():
        raise BadInputError(root, "not a BIDS dataset: no dataset_description.json")
    from bids import BIDSLayout

    try:
        return BIDSLayout(root, validate=True, derivatives=derivatives)
    except Exception as exc:  # pybids' own validation and JSON errors
        reason = " ".join(str(exc).split())[:200]
        raise BadInputError(root, f"not a valid BIDS dataset: {reason}") from None


def _participants(layout: Any, b: BidsSpec, root: Path) -> list[str] | None:
    """The participant labels to read (without ``sub-``); an unknown one is refused."""
    if b.participants is None:
        return None
    wanted = [p.removeprefix("sub-") for p in b.participants]
    known = set(layout.get_subjects())
    missing = [f"sub-{p}" for p in wanted if p not in known]
    if missing:
        raise BadInputError(root, f"no participant {', '.join(missing)} in the dataset")
    return wanted


def _label(layout: Any, image: Any, b: BidsSpec) -> Path | None:
    """The one derivative label map of ``image`` (same participant, session, run)."""
    if b.label_suffix is None:
        return None
    entities = image.get_entities()
    query = {k: entities[k] for k in ("subject", "session", "run") if k in entities}
    if b.label_desc is not None:
        query["desc"] = b.label_desc
    found = layout.get(
        scope="derivatives", suffix=b.label_suffix, extension=EXTENSIONS, **query,
        return_type="filename",
    )  # fmt: skip
    found = [f for f in found if "space" not in layout.parse_file_entities(f)]
    if len(found) != 1:
        what = "no" if not found else f"{len(found)} (set bids.label_desc)"
        raise BadInputError(
            Path(image.path), f"{what} {b.label_suffix} label map in the dataset's derivatives"
        )
    return Path(found[0])


def bids_images(spec: SourceSpec, base: Path) -> list[BidsImage]:
    """The images of a ``bids`` source, in file order, each with its participant."""
    b = spec.bids
    root = base / spec.paths[0]
    layout = _layout(root, derivatives=b.label_suffix is not None)
    query: dict[str, Any] = {"datatype": b.datatype, "suffix": b.suffix, "extension": EXTENSIONS}
    subjects = _participants(layout, b, root)
    if subjects is not None:
        query["subject"] = subjects
    images = sorted(layout.get(scope="raw", return_type="object", **query), key=lambda f: f.path)
    if not images:
        raise BadInputError(root, f"no {b.datatype}/*_{b.suffix} NIfTI image in the dataset")
    out = []
    for image in images:
        path = Path(image.path)
        stem = path.name.removesuffix(".gz").removesuffix(".nii")
        subject = f"sub-{image.get_entities()['subject']}"
        out.append(BidsImage(path, subject, stem, _label(layout, image, b)))
    return out


def image_spec(spec: SourceSpec, image: BidsImage) -> SourceSpec:
    """The NIfTI source of one image: what its record is inspected as."""
    label = None
    if image.label is not None:
        classes = spec.bids.classes
        label = LabelSpec(kind="raster", path=str(image.label), classes=classes or [])
    return spec.model_copy(update={"kind": "nifti", "paths": [str(image.path)], "label": label})
