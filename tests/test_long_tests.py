"""No test over 60 s without a reason written beside it: ``pytest.mark.long("why")``, whose
reason collection checks; the run's summary lists the tests over 60 s without one."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.conftest import LONG_S, long_reason_problems


def _item(nodeid: str, mark: pytest.MarkDecorator | None) -> SimpleNamespace:
    def closest(name: str) -> pytest.Mark | None:
        return mark.mark if mark is not None and mark.name == name else None

    return SimpleNamespace(nodeid=nodeid, get_closest_marker=closest)


def test_a_long_test_must_say_why_in_three_words():
    items = [
        _item("a.py::ok", pytest.mark.long("two trainings of two ranks")),
        _item("a.py::short", pytest.mark.long("slow")),
        _item("a.py::bare", pytest.mark.long()),
        _item("a.py::plain", None),
    ]
    problems = long_reason_problems(items)  # type: ignore[arg-type]
    assert [p.split(":")[2] for p in problems] == ["short", "bare"]
    assert LONG_S == 60.0


def test_every_long_test_of_the_suite_says_why():
    """Read from the sources, so that it holds whichever tests a run collects."""
    found = re.compile(r"@pytest\.mark\.long\((.*)\)")
    reasons = [
        m[1]
        for path in Path(__file__).parent.rglob("test_*.py")
        for m in found.finditer(path.read_text())
        if path.name != Path(__file__).name
    ]
    assert len(reasons) >= 5  # the tests over 60 s in CI at 05364ba
    assert all(len(r.strip("\"'").split()) >= 3 for r in reasons), reasons
