"""The docs' generated references are up to date with the code, and say what every key is;
the README stays short, and the hand-written pages keep one sentence per line."""

from __future__ import annotations

import re

from tessera.flows.cli.docs_reference import PAGES, cli_reference, params_reference
from tests.helpers import REPO

FOLDER = REPO / "docs" / "reference"


def test_the_committed_references_are_what_the_code_generates():
    for page, text in (("params.md", params_reference()), ("cli.md", cli_reference())):
        assert (FOLDER / page).read_text() == text, (
            f"docs/reference/{page} is stale: run `python -m tessera.flows.cli.docs_reference`"
        )
    assert set(PAGES) == {"params.md", "cli.md"}


def test_every_params_key_and_cli_option_says_what_it_is():
    """A field or option without a description would leave an empty cell in the reference."""
    params = [ln for ln in params_reference().splitlines() if ln.startswith("| `")]
    options = [ln for ln in cli_reference().splitlines() if ln.startswith("| `-")]
    assert len(params) > 80 and len(options) > 40
    for row in params + options:
        assert not row.rstrip().endswith("|  |"), row
    assert "| `runner.tracking_timeout_s` | float | `30` |" in "\n".join(params)


# The hand-written pages: one sentence per line, so that a diff shows the sentence that changed.
GENERATED = {FOLDER / page for page in PAGES}
PAGES_WRITTEN = sorted(p for p in (REPO / "docs").rglob("*.md") if p not in GENERATED)
HAND_WRITTEN = [REPO / "README.md", *PAGES_WRITTEN]
CODE_SPAN = re.compile(r"`[^`]*`")
LINK_TARGET = re.compile(r"\]\([^)]*\)")
ABBREVIATION = re.compile(r"\b(?:e\.g|i\.e|et al|etc|vs)\.")
LIST_MARKER = re.compile(r"^\s*(?:[-*+:]|\d+\.)\s+")
# a sentence end, then (past closing marks and spaces) the capital or code that opens another
TWO_SENTENCES = re.compile(r"[.!?][\"')*\]]* +[\"(*\[]*[A-Z`]")


def prose_lines(text: str) -> list[tuple[int, str]]:
    """Numbered lines outside code fences, tables and HTML comments."""
    lines, fenced = [], False
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith(("```", "~~~")):
            fenced = not fenced
        elif not fenced and not stripped.startswith(("|", "<!--")):
            lines.append((number, line))
    return lines


def test_the_readme_is_short():
    size = (REPO / "README.md").stat().st_size
    assert size <= 8192, f"README.md is {size} bytes: move detail into docs/ (at most 8 KiB)"


def test_hand_written_pages_keep_one_sentence_per_line():
    assert len(HAND_WRITTEN) > 10 and not GENERATED & set(HAND_WRITTEN)
    problems = []
    for page in HAND_WRITTEN:
        for number, line in prose_lines(page.read_text()):
            where = f"{page.relative_to(REPO)}:{number}"
            if len(line) > 300:
                problems.append(f"{where}: {len(line)} characters")
            bare = LIST_MARKER.sub("", line)
            bare = ABBREVIATION.sub("", LINK_TARGET.sub("]", CODE_SPAN.sub("`", bare)))
            if TWO_SENTENCES.search(bare):
                problems.append(f"{where}: two sentences: {line.strip()[:80]}")
    assert not problems, "\n".join(problems)
