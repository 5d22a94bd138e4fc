"""The inspection's cache key: any change of an input changes it, without reading the input."""

from __future__ import annotations

import os
import time

from tessera.tasks.sources.cache_key import file_state, source_cache_key
from tessera.tasks.sources.specs import SourceSpec


def test_a_file_rewritten_with_its_old_size_and_times_still_changes_the_key(tmp_path):
    f = tmp_path / "a.tif"
    f.write_bytes(b"x" * 100)
    spec = SourceSpec(name="a", kind="geotiff", paths=["a.tif"])
    key = source_cache_key(None, {"spec": spec, "base": str(tmp_path)})
    assert source_cache_key(None, {"spec": spec, "base": str(tmp_path)}) == key
    st = f.stat()
    time.sleep(0.01)
    with open(f, "r+b") as fh:  # the same size, in place (the same inode)
        fh.write(b"y")
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))  # and the old modification time back
    assert f.stat().st_size == st.st_size and f.stat().st_mtime_ns == st.st_mtime_ns
    assert source_cache_key(None, {"spec": spec, "base": str(tmp_path)}) != key


def test_a_series_folder_changes_with_any_of_its_files(tmp_path):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "1.dcm").write_bytes(b"a")
    before = file_state(tmp_path / "s")
    (tmp_path / "s" / "2.dcm").write_bytes(b"b")
    assert file_state(tmp_path / "s") != before
    assert file_state(tmp_path / "missing") == "missing"
