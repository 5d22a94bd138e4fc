"""How ``tessera predict`` applies a model: the ``predict`` section of ``params.yaml``."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from tessera.tasks.sources.specs import OnBadInput, on_bad_input_field

Blend = Literal["gaussian", "constant"]
Device = Literal["auto", "cpu", "cuda"]


class PredictOptions(BaseModel):
    """Options of ``tessera predict`` (each also a command-line option)."""

    model_config = ConfigDict(extra="forbid")
    out: str = Field(default="outputs/predict", description="Folder of the maps.")
    overlap: float = Field(default=0.25, ge=0, lt=1, description="Share of the window overlapped.")
    blend: Blend = Field(default="gaussian", description="Weights of overlapping windows.")
    batch_size: int = Field(default=16, ge=1, description="Windows per forward pass.")
    device: Device = Field(default="auto", description="auto: CUDA when present (bf16).")
    probabilities: bool = Field(default=False, description="Also write one band per class.")
    reconstruction: bool = Field(
        default=False,
        description="Also the reconstruction in source units and a per-pixel anomaly map "
        "(reconstruction error): segmentation autoencoders, rasters.",
    )
    on_bad_input: OnBadInput = on_bad_input_field()
    force: bool = Field(default=False, description="Redo maps this model version made.")
    experiments: list[str] = Field(
        default_factory=list,
        description="The pipeline's predict@<experiment> stages: each maps its own sources.",
    )
