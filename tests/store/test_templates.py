"""Empty databases made once per user and copied: made whole by one child, never replacing a
file, and a maker that fails is one line that leaves nothing behind."""

from __future__ import annotations

import sys

import pytest

from tessera.tasks.store.templates import TemplateError, copy_new, template

WRITE = ["{python}", "-c", "import sys; open(sys.argv[1], 'w').write('empty')", "{path}"]


def test_a_template_is_made_once_and_a_copy_never_replaces_a_file(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    made = template("thing", "empty-1.db", WRITE, {}, "thing")
    assert made == tmp_path / "cache" / "tessera" / "thing" / "empty-1.db"
    assert made.read_text() == "empty"
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-python"))  # no child this time
    assert template("thing", "empty-1.db", WRITE, {}, "thing") == made
    assert sorted(p.name for p in made.parent.iterdir()) == [".create.lock", "empty-1.db"]

    assert copy_new(made, tmp_path / "new" / "a.db")
    assert (tmp_path / "new" / "a.db").read_text() == "empty"
    theirs = tmp_path / "theirs.db"
    theirs.write_bytes(b"the user's own bytes")
    assert not copy_new(made, theirs)
    assert theirs.read_bytes() == b"the user's own bytes"
    assert not list(tmp_path.rglob("*.partial"))


def test_a_maker_that_fails_is_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    fail = ["{python}", "-c", "import sys; sys.exit('no database here')"]
    with pytest.raises(TemplateError, match="cannot create an empty thing: no database here"):
        template("thing", "empty-1.db", fail, {}, "thing")
    silent = ["{python}", "-c", "pass"]  # exits 0 but writes nothing
    with pytest.raises(TemplateError, match="it wrote no database"):
        template("thing", "empty-1.db", silent, {}, "thing")
    folder = tmp_path / "cache" / "tessera" / "thing"
    assert [p.name for p in folder.iterdir()] == [".create.lock"]
