"""The real Prefect flows on the real sample data, with their artifacts."""

import numpy as np
import pytest
import rasterio

from tessera.flows.ingest import ingest_flow
from tessera.flows.settings.schema import IngestParams, TileStageParams
from tessera.flows.tile import tile_flow
from tessera.tasks.sources.samples import sample_files
from tessera.tasks.sources.specs import SourceSpec
from tessera.tasks.store.reader import TileStore
from tests.helpers import landsat_qa_source


@pytest.fixture
def landsat_dir(tmp_path):
    files = sample_files()
    d = tmp_path / "data" / "landsat8"
    d.mkdir(parents=True)
    for rel, src in files.items():
        if rel.startswith("landsat8/"):
            (d / src.name).write_bytes(src.read_bytes())
    return tmp_path


def test_flows_on_real_landsat_with_artifacts(landsat_dir, prefect_api):
    from prefect.artifacts import Artifact

    src = SourceSpec.model_validate(
        landsat_qa_source("landsat8", "data/landsat8/l8_B*.tif", "data/landsat8/l8_BQA.tif")
    )
    base = str(landsat_dir)
    state = ingest_flow(IngestParams(sources=[src]), base=base, return_state=True)
    assert state.is_completed(), state.message
    params = TileStageParams(size=128, stride=128, stats_row_step=1, split={"block_size": 256})
    state = tile_flow(params, base=base, return_state=True)
    assert state.is_completed(), state.message
    store = TileStore.open(landsat_dir / "outputs" / "tiles")
    info = store.info.sources["landsat8"]
    assert info.bands == [f"B{i}" for i in range(1, 12)]
    assert set(store.index.split) == {"train", "val", "test"}
    # Each band's statistics equal a direct computation over the source file
    with rasterio.open(landsat_dir / "data/landsat8/l8_B10.tif") as ds:
        b10 = ds.read(1).astype(np.float64)
    b10 = b10[b10 != 0]
    assert info.stats["B10"]["mean"] == pytest.approx(b10.mean(), rel=1e-9)
    assert info.stats["B10"]["p98"] == np.percentile(b10, 98, method="lower")
    for key in ("tessera-ingest", "tessera-tile"):
        art = Artifact.get(key)
        assert art is not None and "landsat8" in str(art.data)


def test_failed_flow_carries_the_one_line_reason(tmp_path, prefect_api):
    (tmp_path / "x.tif").write_bytes(b"")
    src = SourceSpec(name="x", kind="geotiff", paths=["x.tif"])
    state = ingest_flow(IngestParams(sources=[src]), base=str(tmp_path), return_state=True)
    assert state.is_failed()
    assert state.message == f"{tmp_path / 'x.tif'}: empty file (0 bytes)"
    assert not (tmp_path / "outputs").exists()
