"""Every file of the installed nibabel's and pydicom's own test data through `tessera tile`, in a
real process: each tiles with the values its own library returns, at the voxel its own header
puts them, or is refused in one line, with nothing else on stderr.

The inputs are whole folders, not a choice: every NIfTI (and NIfTI or ANALYZE header) and
DICOM in nibabel's test data, every file and folder below pydicom's ``test_files``, and every
file of rasterio's package that GDAL opens as a raster (rasterio and GDAL ship no test rasters;
the one raster there is GDAL's icon). A file a new release adds must tile exactly or be refused
for a reason listed in ``REFUSED``.
"""

from __future__ import annotations

import fnmatch
import json
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import rasterio

from tessera.tasks.store.reader import TileStore
from tests.conftest import child_env
from tests.sources.references import check_scene, dicom_reference, nifti_reference

NIBABEL = Path(nib.__file__).parent
PYDICOM = Path(pydicom.__file__).parent / "data" / "test_files"
RASTERIO = Path(rasterio.__file__).parent  # its wheel carries GDAL's support files
SIZE = 64
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom, reading references

# The files refused on purpose: (pattern on the path below its package folder, reason), and why.
REFUSED: list[tuple[str, str]] = [
    # not images: documentation, text dumps, JSON, an ICC colour profile, a gzip archive; a
    # .json input is read as a STAC Item or Collection, and pydicom's DICOM JSON is neither
    ("*README*", "not a readable raster image"),
    ("*.dump", "not a readable raster image"),
    ("*.json", "not a readable STAC Item or Collection"),
    ("*.icc", "not a readable raster image"),
    ("*zipMR.gz", "not a readable raster image"),
    # DICOM objects without pixel data: DICOMDIRs and their record stubs, RT plans and
    # structures, structured reports, a waveform, bare datasets made to test the parser
    ("*DICOMDIR*", "no pixel data"),
    ("*TINY_ALPHA*", "no pixel data"),  # its image records too, and their folders
    ("*rtplan*.dcm", "no pixel data"),
    ("*rtstruct.dcm", "no pixel data"),
    ("*reportsi*.dcm", "no pixel data"),
    ("*test-SR.dcm", "no pixel data"),
    ("*waveform_ecg.dcm", "no pixel data"),
    ("*NoMeta.dcm", "no pixel data"),
    ("*no_meta*.dcm", "no pixel data"),
    ("test_files/priv_SQ.dcm", "no pixel data"),
    ("*UN_sequence.dcm", "no pixel data"),
    ("*empty_charset_LEI.dcm", "no pixel data"),
    ("*csa_slice_norm.dcm", "no pixel data"),
    # pixel data without Rows and Columns: nothing says how to lay the bytes out
    ("*meta_missing_tsyntax.dcm", "claims 0x0 pixels"),
    ("*nested_priv_SQ.dcm", "claims 0x0 pixels"),
    ("*badVR.dcm", "invalid image header"),  # NumberOfFrames '1A'
    ("*MR_truncated.dcm", "truncated pixel data"),
    # 12-bit JPEG Extended: pylibjpeg-libjpeg rejects its scan header, Pillow has no 12 bits
    ("*JPEG-lossy.dcm", "cannot decode"),
    # a sequence delimiter inside the JPEG 2000 codestream: the installed decoders stop there
    ("*JPEG2000-embedded-sequence-delimiter.dcm", "cannot decode"),
    ("*row_major.dconn.nii", "CIFTI-2"),  # a connectivity matrix, not a volume
    ("*nifti[12].hdr", "is missing"),  # NIfTI pair headers shipped without their .img
    ("*analyze.hdr", "ANALYZE 7.5"),  # no orientation: guessing one would misplace voxels
    ("*gdalicon.png", "not georeferenced"),  # GDAL's icon, the one raster rasterio ships
    # series folders that are not one evenly spaced series
    ("test_files", "no pixel data"),  # the whole folder: the first DICOM without pixels
    ("*dicomdirtests", "no pixel data"),
    ("*77654033/CT2", "irregular slice spacing"),
    ("*98892001/CT2N", "different orientations"),
    ("*98892003/MR1", "different series"),
    ("*98892003/MR2", "different series"),
    ("*98892003/MR700", "different orientations"),
]


def _is_nifti(f: Path) -> bool:
    return f.name.endswith((".nii", ".nii.gz", ".hdr"))


def gdal_rasters(root: Path) -> list[Path]:
    """Every file below ``root`` that GDAL opens as a raster (code and libraries aside)."""
    found = []
    for f in sorted(root.rglob("*")):
        if f.is_file() and f.suffix not in (".py", ".pyc", ".so") and ".so." not in f.name:
            try:
                with rasterio.open(f):
                    found.append(f)
            except rasterio.errors.RasterioIOError:
                pass
    return found


def corpus_inputs() -> list[Path]:
    """The whole folders: nibabel's NIfTI and DICOM test files, every file and every folder
    below pydicom's ``test_files`` (a folder is a series), every raster rasterio ships."""
    nibabel = [f for f in sorted((NIBABEL / "tests" / "data").iterdir()) if _is_nifti(f)]
    nibabel += sorted(NIBABEL.glob("tests/data/*.dcm"))
    nibabel += sorted(NIBABEL.glob("nicom/tests/data/*.dcm"))
    below = sorted(PYDICOM.rglob("*"))
    folders = [PYDICOM] + [d for d in below if d.is_dir() and any(p.is_file() for p in d.iterdir())]
    return nibabel + [f for f in below if f.is_file()] + folders + gdal_rasters(RASTERIO)


def _name(path: Path) -> str:
    """The path below its package's folder: what ``REFUSED`` matches."""
    for root in (PYDICOM.parent, NIBABEL, RASTERIO):
        if path.is_relative_to(root):
            return str(path.relative_to(root))
    return str(path)


def refusal_reason(path: Path) -> str | None:
    return next((why for pat, why in REFUSED if fnmatch.fnmatch(_name(path), pat)), None)


def _tessera(args: list[object], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    exe = Path(env["PATH"].split(":")[0]) / "tessera"
    return subprocess.run(
        [str(exe), *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def tiled(tmp_path_factory: pytest.TempPathFactory, prefect_api: str):
    """One `tessera tile` of the whole corpus, refusals skipped; (inputs, store, rejected,
    the finished process)."""
    d = tmp_path_factory.mktemp("package_corpus")
    inputs = corpus_inputs()
    args = [a for p in inputs for a in ("--input", p)]
    res = _tessera(
        ["tile", *args, "--out", d / "store", "--size", SIZE, "--min-valid-fraction", 0,
         "--on-bad-input", "skip", "--set", "tile.split.slab_buffer=0"], d, child_env(prefect_api),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    rejected = json.loads((d / "store" / "rejected.json").read_text())
    return inputs, TileStore.open(d / "store"), rejected, res


def test_every_file_tiles_exactly_or_is_refused_for_a_listed_reason(tiled):
    inputs, store, rejected, res = tiled
    assert res.stderr == "", res.stderr  # no decoder's log, warning or traceback
    reported = [(Path(x["path"]), x["reason"]) for x in rejected]
    scenes = {Path(s["files"][0]): sid for sid, s in json.loads(
        (store.root / "store.json").read_text())["scenes"].items()}  # fmt: skip
    scene_ids = store.index["scene_id"].to_numpy()
    unexpected, exact, refused = [], [], []
    for path in inputs:
        # a refused folder is reported by the file in it that was refused
        reasons = [why for p, why in reported if p == path] or [
            why for p, why in reported if p.parent == path
        ]
        expected = refusal_reason(path)
        if reasons:
            ok = expected is not None and expected in reasons[0] and "\n" not in reasons[0]
            (refused if ok else unexpected).append(f"{_name(path)}: {reasons[0]}")
            continue
        if expected is not None:
            unexpected.append(f"{_name(path)}: tiled, but listed as refused ({expected})")
            continue
        assert path in scenes, f"{_name(path)}: neither tiled nor refused"
        rows = np.flatnonzero(scene_ids == scenes[path])
        if _is_nifti(path):
            src, affine, unscaled = nifti_reference(path)
        else:
            src, affine = dicom_reference(path)
            unscaled = src.dtype.kind != "f"
        tile = store[int(rows[0])]["image"]
        if unscaled:  # raw values keep their own type
            assert tile.dtype == src.dtype.newbyteorder("="), (_name(path), tile.dtype)
        check_scene(store, rows, src, affine)
        exact.append(_name(path))
    assert not unexpected, "\n".join(unexpected)
    print(f"\n{len(exact)} inputs tiled exactly, {len(refused)} refused on purpose")
    assert len(exact) + len(refused) == len(inputs)
    # the defect this corpus was built for: nibabel's scaled functional.nii
    assert "tests/data/functional.nii" in exact


def test_each_refused_input_is_one_line_naming_it(tiled, tmp_path, subprocess_env):
    inputs, _store, rejected, _res = tiled
    refused = [p for p in inputs if refusal_reason(p) is not None]
    args = [a for p in refused for a in ("--input", p)]
    res = _tessera(["tile", *args, "--out", tmp_path / "store"], tmp_path, subprocess_env)
    assert res.returncode == 1 and res.stdout == ""
    lines = res.stderr.splitlines()
    assert len(lines) == len(rejected) == len(refused), res.stderr[-3000:]
    for line in lines:
        assert line.startswith("tessera: ") and "Traceback" not in line, line
    assert not (tmp_path / "store").exists()


def test_debug_shows_the_decoders_own_words(tmp_path, subprocess_env):
    env = subprocess_env | {"TESSERA_DEBUG": "1"}
    res = _tessera(["tile", "--input", PYDICOM / "JPEG-lossy.dcm", "--out", tmp_path / "s"],
                   tmp_path, env)  # fmt: skip
    assert res.returncode == 1
    assert "pydicom" in res.stderr and len(res.stderr.splitlines()) > 1, res.stderr
