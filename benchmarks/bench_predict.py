"""``tessera predict`` against the bare network and MONAI's in-memory sliding window.

Run by hand (not a test):
    .venv/bin/python benchmarks/bench_predict.py [--sizes 8192 16384] [--workdir DIR] [--skip-monai]

On a synthetic scene with the Landsat experiment's band count, with that experiment's
architecture (random weights), each measured in a fresh process:
- the bare forward over exactly the windows and batches prediction runs (no I/O): the ceiling;
- ``tessera predict``'s per-scene work end to end (read, normalise, forward, blend, write the
  tiled GeoTIFF, copy it to a COG with overviews), through ``predict_scene``;
- MONAI ``sliding_window_inference`` over the scene loaded in memory (the peer).

Prints windows per second, the ratio of ours to the bare forward (target >= 0.85), peak RSS
(target < 1.5 GiB at 16384² and within 20 % of the 8192² figure) and MONAI's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.scenes import make_scene, warm  # noqa: E402

EXPERIMENT = "landsat8-seg_ae"
CLASSES = ["clear", "cloud", "cirrus", "water"]
GIB = 1024.0


def _architecture() -> tuple[dict[str, Any], int]:
    """The experiment's model arguments (params.yaml) and its band count (the sample's)."""
    import yaml

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    model = dict(params["experiments"][EXPERIMENT]["model"])
    model.pop("type")
    bands = 11  # Landsat 8 B1..B11 (BQA is the label)
    return model, bands


def _model(bands: int, window: int) -> Any:
    import torch

    from tessera.models.descriptor import ModelDescriptor
    from tessera.models.trainers import MODEL_MODULES
    from tessera.tasks.prediction.model import AppliedModel

    torch.manual_seed(0)
    args, _ = _architecture()
    module = MODEL_MODULES["seg_ae"](in_channels=bands, num_classes=len(CLASSES), **args)
    names = [f"b{i + 1}" for i in range(bands)]
    d = ModelDescriptor(
        experiment=EXPERIMENT, model_type="seg_ae", output="class_logits", source="bench",
        source_kind="geotiff", bands=names, normalisation="zscore", shift=[2000.0] * bands,
        scale=[1000.0] * bands, window=window, stride=window, axis=2, class_names=CLASSES,
        nodata=0.0, store_version=3,
    )  # fmt: skip
    return AppliedModel(module.serving_module(), d, "bench", "0", "bench")


def _peak_rss_mib() -> float:
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmHWM:")[1].split()[0]) / 1024


def child_forward(
    side: int, window: int, overlap: int, batch: int, fraction: float = 1.0
) -> dict[str, float]:
    """The ceiling: the network over as many windows, in the same batches, no I/O; with
    ``fraction`` < 1, over that share of the batches, its seconds scaled to all of them (a
    steady rate: the same batch each time)."""
    import numpy as np

    from tessera.tasks.prediction.model import batch_predictor
    from tessera.tasks.prediction.stitching import window_origins

    model = _model(_architecture()[1], window)
    n = len(window_origins(side, window, window - overlap)) ** 2
    predict = batch_predictor(model, "cpu", softmax=True)
    x = np.random.default_rng(0).normal(size=(batch, model.descriptor.bands.__len__(), window,
                                              window)).astype(np.float32)  # fmt: skip
    for _ in range(3):  # warm-up: the first batches run slower, which a fraction would scale
        predict(x)
    starts = list(range(0, n, batch))
    timed = starts[: max(1, round(len(starts) * fraction))]
    t0 = time.perf_counter()
    for start in timed:
        predict(x[: min(batch, n - start)])
    return {"seconds": (time.perf_counter() - t0) * len(starts) / len(timed), "windows": n}


def child_ours(scene: Path, out: Path, batch: int, overlap_frac: float) -> dict[str, float]:
    """``predict_scene``: what ``tessera predict`` does for one scene."""
    from tessera.tasks.prediction.apply import predict_scene
    from tessera.tasks.prediction.predict_options import PredictOptions
    from tessera.tasks.prediction.stitching import window_origins
    from tessera.tasks.sources.adhoc import adhoc_sources
    from tessera.tasks.sources.catalog import inspect_source

    report = inspect_source(adhoc_sources([scene], None, False)[0], scene.parent)
    (rec,) = report.records
    with_names = rec.model_copy(update={"band_names": [f"b{i + 1}" for i in
                                                       range(len(rec.band_names))]})  # fmt: skip
    model = _model(len(rec.band_names), 64)
    opts = PredictOptions(device="cpu", overlap=overlap_frac, batch_size=batch, force=True)
    overlap = min(round(overlap_frac * 64), 63)
    n = len(window_origins(rec.shape[1], 64, 64 - overlap)) ** 2
    t0 = time.perf_counter()
    predict_scene(with_names, scene.parent, model, opts, out)
    return {"seconds": time.perf_counter() - t0, "windows": n}


def child_paired(
    scene: Path,
    out: Path,
    batch: int,
    overlap_frac: float,
    overlap: int,
    fraction: float = 1.0,
    repeat: int = 1,
) -> dict[str, Any]:
    """The bare forward, then ``predict_scene``, in one process (one start-up for both, both
    warm), ``repeat`` times: the seconds and windows of the first, and every pair's seconds."""
    import rasterio

    with rasterio.open(scene) as ds:
        side = ds.height
    runs = []
    for i in range(repeat):
        fwd = child_forward(side, 64, overlap, batch, fraction)
        ours = child_ours(scene, out.with_name(f"{out.name}_{i}"), batch, overlap_frac)
        runs.append({"forward_seconds": fwd["seconds"]} | ours)
    return runs[0] | {"runs": runs}


def child_sizes(
    small: Path, big: Path, out: Path, batch: int, overlap_frac: float, fraction: float, repeat: int
) -> dict[str, Any]:
    """:func:`child_paired` on the small scene (whole forward), then ``repeat`` times on the big
    one, in one process: each with the process's peak RSS once it is done, so the second peak
    shows what the big scene needs beyond the small one."""
    overlap = min(round(overlap_frac * 64), 63)
    first = child_paired(small, out / "small", batch, overlap_frac, overlap)
    first["peak_rss_mib"] = _peak_rss_mib()
    second = child_paired(big, out / "big", batch, overlap_frac, overlap, fraction, repeat)
    return {"small": first, "big": second | {"peak_rss_mib": _peak_rss_mib()}}


def child_monai(scene: Path, batch: int, overlap_frac: float) -> dict[str, float]:
    """MONAI's sliding window over the whole scene held in memory (read, infer, argmax)."""
    import numpy as np
    import rasterio
    import torch
    from monai.inferers import sliding_window_inference

    model = _model(11, 64)
    t0 = time.perf_counter()
    with rasterio.open(scene) as ds:
        x = ds.read().astype(np.float32)
    x = (x - 2000.0) / 1000.0
    with torch.inference_mode():
        logits = sliding_window_inference(
            torch.from_numpy(x)[None], (64, 64), batch, model.module, overlap=overlap_frac,
            mode="gaussian",
        )  # fmt: skip
        classes = logits.argmax(1).to(torch.uint8).numpy()
    n = int(classes.size)
    return {"seconds": time.perf_counter() - t0, "pixels": n}


def run_child(kind: str, within_s: float = 3600, **kw: Any) -> dict[str, Any]:
    """One measurement in a fresh process, ``within_s`` seconds at most (then it is killed and
    the benchmark stops with one line); its JSON result."""
    args = [sys.executable, __file__, "--child", kind] + [
        f"--{k.replace('_', '-')}={v}" for k, v in kw.items()
    ]
    try:
        res = subprocess.run(args, capture_output=True, text=True, timeout=within_s)
    except subprocess.TimeoutExpired:
        raise SystemExit(f"{kind}: no answer within {within_s:.0f} s") from None
    if res.returncode != 0:
        raise SystemExit(f"{kind} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[8192, 16384])
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--overlap", type=float, default=0.25)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--skip-monai", action="store_true")
    ap.add_argument("--child", default=None)
    ap.add_argument("--side", type=int, default=0)
    ap.add_argument("--scene", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--big-scene", type=Path, default=None)  # sizes only
    ap.add_argument("--forward-fraction", type=float, default=1.0)
    ap.add_argument("--repeat", type=int, default=1)  # pairs in one child (paired, sizes)
    a = ap.parse_args()
    overlap_px = min(round(a.overlap * 64), 63)
    if a.child:
        result = {
            "forward": lambda: child_forward(a.side, 64, overlap_px, a.batch_size),
            "ours": lambda: child_ours(a.scene, a.out, a.batch_size, a.overlap),
            "monai": lambda: child_monai(a.scene, a.batch_size, a.overlap),
            "sizes": lambda: child_sizes(
                a.scene, a.big_scene, a.out, a.batch_size, a.overlap, a.forward_fraction, a.repeat
            ),
            "paired": lambda: child_paired(
                a.scene, a.out, a.batch_size, a.overlap, overlap_px, a.forward_fraction, a.repeat
            ),
        }[a.child]()
        print(json.dumps(result | {"peak_rss_mib": _peak_rss_mib()}))
        return
    work = a.workdir or Path(tempfile.mkdtemp(prefix="tessera-bench-predict-"))
    _, bands = _architecture()
    rows = []
    for side in a.sizes:
        scene = make_scene(work / f"scene_{side}.tif", side, None, bands)
        warm(scene)
        fwd = run_child("forward", side=side, batch_size=a.batch_size, overlap=a.overlap)
        ours = run_child("ours", scene=scene, out=work / f"maps_{side}",
                         batch_size=a.batch_size, overlap=a.overlap)  # fmt: skip
        monai = (
            None
            if a.skip_monai
            else run_child("monai", scene=scene, batch_size=a.batch_size, overlap=a.overlap)
        )
        rows.append((side, fwd, ours, monai))
        scene.unlink()
        print(
            f"{side}²×{bands}: {ours['windows']} windows; bare forward "
            f"{fwd['windows'] / fwd['seconds']:.1f} windows/s; tessera predict "
            f"{ours['windows'] / ours['seconds']:.1f} windows/s "
            f"(ratio {fwd['seconds'] / ours['seconds']:.3f}, target >= 0.85), peak RSS "
            f"{ours['peak_rss_mib']:.0f} MiB (bare forward {fwd['peak_rss_mib']:.0f} MiB)"
            + (
                f"; MONAI in memory {monai['seconds']:.1f} s, peak RSS "
                f"{monai['peak_rss_mib']:.0f} MiB"
                if monai
                else ""
            ),
            flush=True,
        )
    if len(rows) >= 2:
        small, big = rows[0][2]["peak_rss_mib"], rows[-1][2]["peak_rss_mib"]
        print(
            f"peak RSS {rows[-1][0]}² {big:.0f} MiB vs {rows[0][0]}² {small:.0f} MiB: "
            f"{big / small - 1:+.1%} (target within +20 %); "
            f"{'under' if big < 1.5 * GIB else 'over'} 1.5 GiB"
        )
    print(
        f"window 64 px, overlap {overlap_px} px, batch {a.batch_size}, CPU threads "
        f"{__import__('torch').get_num_threads()}"
    )


if __name__ == "__main__":
    main()
