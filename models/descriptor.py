"""``tessera_model.json``: what applying a trained model to raw data needs, logged with it.

A registered model is a graph over normalised tiles; on its own it cannot be applied to a
scene. The descriptor says which bands it reads and in which order, how to normalise them,
the window it was trained on, the volume axis, the classes, the source's nodata and the
store version, so that ``tessera predict`` can apply it and refuse an input it does not fit.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from tessera.models.data.normalisation import (
    Normalisation,
    apply,
    clip_bounds,
    image_params,
    normalisation_params,
    per_image,
)
from tessera.models.run.run_config import RunConfig
from tessera.tasks.store.format import StoreInfo

DESCRIPTOR_FILE = "tessera_model.json"
DESCRIPTOR_VERSION = 2  # 2: per-image normalisation and clip bounds
DIGEST_TAG = "tessera.model_descriptor_sha256"
VOLUME_KINDS = frozenset({"nifti", "dicom"})
_GENERIC_BAND = re.compile(r"^[bc]\d+$")  # how Tessera names unnamed bands and channels


class DescriptorError(ValueError):
    """An input the model does not fit, or a model without a usable descriptor."""


class ModelDescriptor(BaseModel):
    """How a trained model is applied to raw scenes and volumes."""

    model_config = ConfigDict(extra="forbid")
    version: int = DESCRIPTOR_VERSION
    experiment: str
    model_type: str
    output: str = Field(description="What the serving module returns, per the trainer class.")
    source: str = Field(description="The store source the model was trained on.")
    source_kind: Literal["geotiff", "nifti", "dicom"]
    bands: list[str] = Field(description="Input bands, in the order the model reads them.")
    normalisation: Normalisation = Field(
        description="The scheme (tessera.models.data.normalisation); image_* take shift and scale "
        "from each input image, so the stored ones are empty."
    )
    shift: list[float] = Field(description="Per band: subtracted first.")
    scale: list[float] = Field(description="Per band: then divided by.")
    clip: list[list[float]] | None = Field(
        default=None, description="Per band [low, high] the values are clipped to first (ct)."
    )
    window: int = Field(description="Tile side the model was trained on, in pixels.")
    stride: int
    axis: int = Field(description="Volume slicing axis (in RAS) of the training tiles.")
    class_names: list[str]
    nodata: float | None = Field(description="The source's nodata: such pixels are no data.")
    store_version: int

    @classmethod
    def build(cls, run: RunConfig, info: StoreInfo, output: str) -> ModelDescriptor:
        """The descriptor of ``run``'s model, trained on a store described by ``info``."""
        source = run.dataset.sources[0]
        src = info.sources[source]
        how = run.dataset.normalisation
        if how == "none":
            shift, scale = [0.0] * len(src.bands), [1.0] * len(src.bands)
        elif per_image(how):
            shift, scale = [], []
        else:
            shift, scale = normalisation_params(src.stats, src.bands, how)
        return cls(
            experiment=run.experiment,
            model_type=str(run.model["type"]),
            output=output,
            source=source,
            source_kind=src.kind,  # type: ignore[arg-type]
            bands=list(src.bands),
            normalisation=how,
            shift=shift,
            scale=scale,
            clip=clip_bounds(src.stats, src.bands, how),
            window=info.params.size,
            stride=info.params.stride,
            axis=info.params.axis,
            class_names=list(src.class_names),
            nodata=src.nodata,
            store_version=info.version,
        )

    def to_bytes(self) -> bytes:
        """Canonical JSON (sorted keys): what is logged, and what its digest is taken of."""
        return (json.dumps(self.model_dump(), indent=2, sort_keys=True) + "\n").encode()

    def digest(self) -> str:
        """sha256 of :meth:`to_bytes`."""
        return hashlib.sha256(self.to_bytes()).hexdigest()

    @classmethod
    def parse(cls, text: str | bytes, where: str) -> ModelDescriptor:
        """A descriptor read back; a missing or newer one is refused in one line."""
        try:
            data = json.loads(text)
        except ValueError:
            raise DescriptorError(f"{where}: {DESCRIPTOR_FILE} is not JSON") from None
        if not isinstance(data, dict):
            raise DescriptorError(f"{where}: {DESCRIPTOR_FILE} is not a JSON object")
        if data.get("version", 0) > DESCRIPTOR_VERSION:
            raise DescriptorError(
                f"{where}: {DESCRIPTOR_FILE} version {data['version']} is newer than this "
                f"Tessera reads ({DESCRIPTOR_VERSION}); upgrade Tessera"
            )
        return cls.model_validate(data)

    def for_image(self, pieces: Iterable[tuple[np.ndarray, np.ndarray]]) -> ModelDescriptor:
        """This descriptor with one input image's own shift and scale, from its pieces of
        (values (C, h, w) in the model's band order, valid (h, w)), where the scheme is per
        image; itself otherwise."""
        if not per_image(self.normalisation):
            return self
        shift, scale = image_params(pieces, self.bands, self.normalisation)
        return self.model_copy(update={"shift": shift, "scale": scale})

    def normalise(self, window: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """A (C, h, w) window of source values in the model's input units, as
        :class:`~tessera.models.data.tiles.TileDataset` gives tiles: ``(x - shift) / scale``, and 0
        where ``valid`` (h, w) is False (or, for ``image_zscore``, in the background);
        without normalisation, the values as they are. A per-image scheme needs
        :meth:`for_image` first."""
        if self.normalisation == "none":
            return window.astype(np.float32)
        if len(self.shift) != len(self.bands):
            raise DescriptorError(
                f"{self.experiment}: normalisation {self.normalisation} is per image; "
                "fit it to the image first (for_image)"
            )
        shift = np.asarray(self.shift, dtype=np.float32)[:, None, None]
        scale = np.asarray(self.scale, dtype=np.float32)[:, None, None]
        clip = None if self.clip is None else np.asarray(self.clip, dtype=np.float32)
        return apply(window, valid, shift, scale, self.normalisation, clip)

    @property
    def is_volume(self) -> bool:
        """Trained on volumes (NIfTI or DICOM) rather than rasters."""
        return self.source_kind in VOLUME_KINDS

    def band_order(self, bands: list[str], kind: str, where: str) -> list[int]:
        """Which input band feeds each of the model's bands, in the model's order.

        Refuses an input the model does not fit: another kind (raster or volume), another
        band count, or named bands that do not name the model's. A band matches by its name
        (any case), or by the name as a token of it (``l8_B4.tif`` is ``B4``), so a stack of
        band files given in any order is read in the model's; unnamed bands go by position.
        """
        if (kind in VOLUME_KINDS) != self.is_volume:
            raise DescriptorError(
                f"{where}: a {kind} input, but {self.experiment} was trained on "
                f"{self.source_kind} ({self.source})"
            )
        if len(bands) != len(self.bands):
            raise DescriptorError(
                f"{where}: {len(bands)} bands ({', '.join(bands)}), but {self.experiment} "
                f"reads {len(self.bands)} ({', '.join(self.bands)})"
            )
        if any(_GENERIC_BAND.match(b) for b in [*bands, *self.bands]):
            return list(range(len(bands)))
        order = [_matching(want, bands) for want in self.bands]
        if None in order or len(set(order)) != len(order):
            raise DescriptorError(
                f"{where}: bands {', '.join(bands)}, but {self.experiment} reads "
                f"{', '.join(self.bands)}"
            )
        return [i for i in order if i is not None]


def _matching(want: str, bands: list[str]) -> int | None:
    """The one input band named ``want``, exactly or as a token; None if none or several."""
    exact = [i for i, b in enumerate(bands) if b.lower() == want.lower()]
    if exact:
        return exact[0] if len(exact) == 1 else None
    token = re.compile(rf"(?<![A-Za-z0-9]){re.escape(want)}(?![A-Za-z0-9])", re.IGNORECASE)
    found = [i for i, b in enumerate(bands) if token.search(b)]
    return found[0] if len(found) == 1 else None
