"""No function takes more than 7 parameters without a reason written beside it: ruff's
PLR0913 (``max-args = 7`` in pyproject.toml) refuses the function, and its ``# noqa`` must
say why in words."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUFF = Path(sys.executable).parent / "ruff"
NOQA = re.compile(r"#\s*noqa:\s*PLR0913\b(?P<rest>.*)$")


def unexplained(folders: list[Path]) -> list[str]:
    """Each ``# noqa: PLR0913`` in ``folders`` without a reason of three words or more."""
    bad = []
    for folder in folders:
        for path in sorted(folder.rglob("*.py")):
            for n, line in enumerate(path.read_text().splitlines(), start=1):
                found = NOQA.search(line)
                if found and len(re.findall(r"[A-Za-z.]+", found["rest"])) < 3:
                    bad.append(f"{path.relative_to(folder.parent)}:{n}")
    return bad


def test_every_long_signature_says_why():
    folders = [ROOT / name for name in ("flows", "tasks", "models", "benchmarks")]
    assert unexplained(folders) == []
    proc = subprocess.run(
        [str(RUFF), "check", "--select", "PLR0913", *map(str, folders)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:]


def test_a_long_signature_without_a_reason_is_refused(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "bare.py").write_text("def f(a, b, c, d, e, f, g, h):  # noqa: PLR0913\n    return a\n")
    (src / "silent.py").write_text("def f(a, b, c, d, e, f, g, h):\n    return a\n")
    assert unexplained([src]) == ["src/bare.py:1"]
    proc = subprocess.run(
        [str(RUFF), "check", "--select", "PLR0913", "--config", str(ROOT / "pyproject.toml"),
         str(src / "silent.py")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1 and "PLR0913" in proc.stdout
