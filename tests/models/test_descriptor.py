"""tessera_model.json: built from the run and the store, read back, and refusing misfits."""

from __future__ import annotations

import pytest

from tessera.models.data.normalisation import normalisation_params
from tessera.models.descriptor import DescriptorError, ModelDescriptor
from tessera.models.run.run_config import DatasetParams, RunConfig
from tessera.tasks.store.format import StoreInfo

BANDS = ["B1", "B2", "B3"]
STATS = {b: {"count": 10, "mean": 100.0 * i, "std": 10.0 * i, "min": 0.0, "max": 900.0,
             "p2": 5.0 * i, "p98": 800.0} for i, b in enumerate(BANDS, start=1)}  # fmt: skip


def _descriptor(normalisation: str = "zscore") -> ModelDescriptor:
    info = StoreInfo.model_validate(
        {
            "n_tiles": 4,
            "params": {"size": 64, "stride": 48, "axis": 2},
            "sources": {
                "l8": {
                    "kind": "geotiff",
                    "bands": BANDS,
                    "dtype": "uint16",
                    "nodata": 0.0,
                    "class_names": ["clear", "cloud"],
                    "stats": STATS,
                },
            },
        }
    )
    run = RunConfig(
        experiment="l8-seg",
        store="tiles",
        out_dir="models/l8-seg",
        dataset=DatasetParams(sources=["l8"], normalisation=normalisation),
        model={"type": "seg_ae"},
    )
    return ModelDescriptor.build(run, info, "class_logits")


def test_the_descriptor_carries_what_training_normalised_with():
    d = _descriptor()
    assert (d.shift, d.scale) == normalisation_params(STATS, BANDS, "zscore")
    assert (d.window, d.stride, d.axis, d.nodata) == (64, 48, 2, 0.0)
    assert d.bands == BANDS and d.class_names == ["clear", "cloud"]
    none = _descriptor("none")
    assert none.shift == [0.0] * 3 and none.scale == [1.0] * 3


def test_it_reads_back_to_the_same_descriptor_and_digest():
    d = _descriptor()
    back = ModelDescriptor.parse(d.to_bytes(), "m")
    assert back == d and back.digest() == d.digest() and len(d.digest()) == 64


@pytest.mark.parametrize(
    ("bands", "kind", "words"),
    [
        (["B1", "B2"], "geotiff", "2 bands (B1, B2), but l8-seg reads 3 (B1, B2, B3)"),
        (["B1", "B2", "B4"], "geotiff", "bands B1, B2, B4, but l8-seg reads B1, B2, B3"),
        (["a_B1", "b_B1", "B3"], "geotiff", "bands a_B1, b_B1, B3, but l8-seg reads B1, B2, B3"),
        (["intensity"] * 3, "nifti", "a nifti input, but l8-seg was trained on geotiff"),
    ],
)
def test_an_input_the_model_does_not_fit_is_refused_naming_both_sides(bands, kind, words):
    with pytest.raises(
        DescriptorError, match="scene.tif: " + words.replace("(", r"\(").replace(")", r"\)")
    ):
        _descriptor().band_order(bands, kind, "scene.tif")


def test_generic_band_names_go_by_position():
    assert _descriptor().band_order(["b1", "b2", "b3"], "geotiff", "scene.tif") == [0, 1, 2]


def test_band_files_in_any_order_are_read_in_the_models_order():
    files = ["l8_B3.tif", "l8_b1.tif", "l8_B2.tif"]
    assert _descriptor().band_order(files, "geotiff", "stack") == [1, 2, 0]


def test_normalise_matches_the_tile_datasets_units_and_zeroes_invalid_pixels():
    import numpy as np
    import torch

    from tessera.models.data.tiles import TileDataset

    d = _descriptor()
    x = np.arange(3 * 4 * 4, dtype=np.uint16).reshape(3, 4, 4) * 7
    valid = np.ones((4, 4), dtype=bool)
    valid[0, :2] = False
    ds = TileDataset.__new__(TileDataset)
    ds._shift, ds._scale = (torch.tensor(v).view(-1, 1, 1) for v in (d.shift, d.scale))
    ds._clip, ds._scene_of_row, ds.normalisation = None, None, "zscore"
    want = ds._image(x, valid, np.array(0)).numpy()
    assert np.allclose(d.normalise(x, valid), want) and (d.normalise(x, valid)[:, 0, :2] == 0).all()


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("{not json", "is not JSON"),
        ('{"version": 99}', "version 99 is newer"),
        ("[1]", "not a JSON object"),
    ],
)
def test_a_junk_or_newer_descriptor_is_refused_in_one_line(text, words):
    with pytest.raises(DescriptorError, match=words):
        ModelDescriptor.parse(text, "models:/x/1")
