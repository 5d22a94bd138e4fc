"""DICOM read from several threads of a fresh process at once (as ingest and tile do): pydicom's
first import must not hand a thread a partly initialised module."""

from __future__ import annotations

import subprocess
import sys

CODE = """
import importlib.util, sys, threading
from pathlib import Path
from tessera.tasks.sources.dicom import check_dicom_header, read_dicom_file

package = Path(importlib.util.find_spec("pydicom").origin).parent  # found, not imported
path = package / "data" / "test_files" / "CT_small.dcm"
assert path.is_file() and "pydicom" not in sys.modules
start, errors = threading.Barrier(8), []

def read(i):
    start.wait()
    try:
        (check_dicom_header if i % 2 else read_dicom_file)(path)
    except Exception as exc:
        errors.append(repr(exc))

threads = [threading.Thread(target=read, args=(i,)) for i in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(errors[0] if errors else "ok")
"""


def test_the_first_reads_from_eight_threads_at_once_all_succeed():
    # before the fix, 16 of 25 such processes failed (importlib's _DeadlockError on
    # pydicom.pixels.utils, or "cannot import name" from it)
    for _ in range(6):
        res = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True,
                             timeout=120)  # fmt: skip
        assert res.returncode == 0 and res.stdout.strip() == "ok", res.stdout + res.stderr[-2000:]
