"""Tile geometry and split parameters, validated once.

This is the one place that says "stride defaults to size" and "stride <= size".
"""

from __future__ import annotations

from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator


class SplitParams(BaseModel):
    """Leakage-free, seeded train/val/test splits."""

    model_config = ConfigDict(extra="forbid")
    fractions: dict[str, float] = Field(
        default_factory=lambda: {"train": 0.7, "val": 0.15, "test": 0.15},
        description="Each split's share of the blocks or slabs (summing to 1).",
    )
    seed: int = Field(default=0, description="Seed of the blocks' and slabs' assignment.")
    block_size: int = Field(default=256, ge=1, description="Raster split blocks, in pixels.")
    slab_thickness: int = Field(default=16, ge=1, description="Slices per slab (one subject).")
    slab_buffer: int = Field(default=2, ge=0, description="Slices dropped beside slab borders.")

    @model_validator(mode="after")
    def _check_fractions(self) -> SplitParams:
        total = sum(self.fractions.values())
        if any(v < 0 for v in self.fractions.values()) or abs(total - 1.0) > 1e-6:
            raise ValueError(f"split fractions must be >= 0 and sum to 1, got {self.fractions}")
        return self


class TileParams(BaseModel):
    """Tile geometry and store layout."""

    model_config = ConfigDict(extra="forbid")
    size: int = Field(default=64, ge=4, le=8192, description="Tile side, in pixels.")
    stride: int = Field(default=64, ge=1, description="Step; defaults to the size (no overlap).")
    axis: int = Field(default=2, ge=0, le=2, description="Volume slicing axis (2: axial in RAS).")
    min_valid_fraction: float = Field(
        default=0.5, ge=0.0, le=1.0, description="Tiles with fewer valid pixels are dropped."
    )
    shard_tiles: int = Field(default=4096, ge=1, description="Tiles per shard file at most.")
    stats_row_step: int = Field(
        default=0,
        ge=0,
        description="Band statistics read every k-th pixel row; 0 (auto): every row of strips "
        "up to 256 Ki pixels, else the step that keeps a strip's sample near that size.",
    )
    split: SplitParams = Field(default_factory=SplitParams)

    @model_validator(mode="before")
    @classmethod
    def _stride_defaults_to_size(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("stride") is None and "size" in data:
            data = {**data, "stride": data["size"]}
        return data

    def with_changes(self, **changes: Any) -> Self:
        """A copy with ``changes`` (None: not given), validated again; a new ``size`` without
        a ``stride`` brings the stride along (no overlap, as by default)."""
        given = {k: v for k, v in changes.items() if v is not None}
        if "size" in given and "stride" not in given:
            given["stride"] = None
        return self.model_validate(self.model_dump() | given) if given else self

    @model_validator(mode="after")
    def _check_stride(self) -> TileParams:
        if self.stride > self.size:
            raise ValueError(f"stride {self.stride} > size {self.size} would skip pixels")
        return self
