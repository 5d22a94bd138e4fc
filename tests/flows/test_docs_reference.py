"""The docs' generated references are up to date with the code, and say what every key is."""

from __future__ import annotations

from tessera.flows.docs_reference import PAGES, cli_reference, params_reference
from tests.helpers import REPO

FOLDER = REPO / "docs" / "reference"


def test_the_committed_references_are_what_the_code_generates():
    for page, text in (("params.md", params_reference()), ("cli.md", cli_reference())):
        assert (FOLDER / page).read_text() == text, (
            f"docs/reference/{page} is stale: run `python -m tessera.flows.docs_reference`"
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
