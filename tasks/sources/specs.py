"""Typed descriptions of sources and labels, shared by the config and the tasks."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Resampling = Literal["nearest", "bilinear", "cubic", "average", "mode"]
SourceKind = Literal["geotiff", "nifti", "dicom", "bids", "stac"]


OnBadInput = Literal["fail", "skip"]


def on_bad_input_field() -> Any:
    """The ``on_bad_input`` option of every stage that reads user files."""
    return Field(default="fail", description="fail: a bad input stops the run; skip: it is listed.")


class QABitRule(BaseModel):
    """Pixels whose bit field ``bits`` (inclusive, low..high) reads at least ``min`` get ``cls``."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    cls: str = Field(alias="class")
    bits: tuple[int, int]
    min: int = Field(default=1, ge=1)

    @model_validator(mode="after")
    def _check_bits(self) -> QABitRule:
        lo, hi = self.bits
        if not 0 <= lo <= hi <= 63:
            raise ValueError(f"bits {self.bits} must be 0 <= low <= high <= 63")
        if self.min >= 2 ** (hi - lo + 1):
            raise ValueError(f"min {self.min} cannot be reached by bits {self.bits}")
        return self


class LabelSpec(BaseModel):
    """Where a source's per-pixel classes come from.

    - ``raster``: a mask on the image grid whose values are class ids.
    - ``vector``: a GeoJSON file rasterised on the image grid (``class_property`` names the class).
    - ``qa_bits``: quality-band bit rules; the first rule that matches wins, else ``classes[0]``.
    - ``prob_maps``: one probability map per non-background class; the argmax above
      ``threshold`` wins, else ``classes[0]``.
    """

    model_config = ConfigDict(extra="forbid")
    kind: Literal["raster", "vector", "qa_bits", "prob_maps"]
    path: str | None = None
    paths: list[str] = Field(default_factory=list)
    classes: list[str] = Field(default_factory=list)
    rules: list[QABitRule] = Field(default_factory=list)
    fill_bit: int | None = Field(default=None, ge=0, le=63)
    threshold: float = Field(default=0.5, gt=0.0, le=1.0)
    class_property: str = "class"

    @model_validator(mode="after")
    def _check_kind(self) -> LabelSpec:
        if self.kind == "prob_maps":
            if not self.paths:
                raise ValueError("prob_maps labels need 'paths'")
            if self.classes and len(self.classes) != len(self.paths) + 1:
                raise ValueError("prob_maps need one class per map plus background first")
        elif not self.path:
            raise ValueError(f"{self.kind} labels need 'path'")
        if self.kind == "qa_bits":
            if not self.rules:
                raise ValueError("qa_bits labels need 'rules'")
            names = self.classes or []
            missing = [r.cls for r in self.rules if r.cls not in names]
            if missing:
                raise ValueError(f"qa_bits rules name classes not in 'classes': {missing}")
        if len(self.classes) > 254:
            raise ValueError("at most 254 classes (255 marks ignored pixels)")
        return self


class BidsSpec(BaseModel):
    """Which images of a BIDS dataset a ``bids`` source reads (with pybids), and their labels.

    Args:
        datatype: The images' BIDS datatype folder (``anat``, ``func``, ...).
        suffix: The images' BIDS suffix (``T1w``, ``T2w``, ``FLAIR``, ...).
        participants: The participants to read (``sub-01`` or ``01``); None reads every one.
            Two sources of one dataset with other participants make held-out subjects.
        label_suffix: The suffix of each image's label map among the dataset's
            ``derivatives`` (``dseg``: a discrete segmentation); None reads no labels.
        label_desc: The ``desc-`` entity of the label maps, where several derivatives have one.
        classes: The label maps' class names, value 0 first; None names them by value.
    """

    model_config = ConfigDict(extra="forbid")
    datatype: str = "anat"
    suffix: str = "T1w"
    participants: list[str] | None = None
    label_suffix: str | None = None
    label_desc: str | None = None
    classes: list[str] | None = None


class StacSpec(BaseModel):
    """Which assets of a ``stac`` source's Items are its bands.

    Args:
        assets: The bands, in order: each an asset key or a band's name (``eo:bands`` or
            ``bands``: ``name`` or ``common_name``), any case. None takes every GeoTIFF asset
            with the ``data`` role (or no role), named by its key.
    """

    model_config = ConfigDict(extra="forbid")
    assets: list[str] | None = None


class SourceSpec(BaseModel):
    """One named source of scenes or volumes."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    kind: SourceKind
    paths: list[str] = Field(default_factory=list)
    glob: str | None = None
    band_regex: str | None = Field(
        default=None,
        description="Multi-file band stacks: a regex on file names with a 'band' group "
        "(and optionally a 'scene' group).",
    )
    bands: list[str] | None = Field(
        default=None, description="Band names to keep, in order (or names of a multi-band file)."
    )
    reference_band: str | None = None
    resampling: Resampling = "bilinear"
    nodata: float | None = Field(default=None, description="Overrides the files' own nodata.")
    label: LabelSpec | None = None
    bids: BidsSpec = Field(
        default_factory=BidsSpec,
        description="A bids source: which images of the dataset folder (its one path) to read.",
    )
    stac: StacSpec = Field(
        default_factory=StacSpec,
        description="A stac source: which assets of its Item or Collection are the bands.",
    )

    @model_validator(mode="after")
    def _check_inputs(self) -> SourceSpec:
        if not self.paths and not self.glob:
            raise ValueError(f"source {self.name!r} needs 'paths' or 'glob'")
        if self.kind == "bids" and (len(self.paths) != 1 or self.glob or self.label):
            raise ValueError(
                f"bids source {self.name!r}: one path (the dataset folder), no glob; its "
                "labels are derivatives, named by bids.label_suffix"
            )
        if self.kind == "stac" and (len(self.paths) != 1 or self.glob or self.band_regex):
            raise ValueError(
                f"stac source {self.name!r}: one path (a STAC Item or Collection), no glob or "
                "band_regex; its bands are assets, named by stac.assets"
            )
        if self.band_regex and "(?P<band>" not in self.band_regex:
            raise ValueError("band_regex needs a named group (?P<band>...)")
        return self
