"""``python -m tessera.flows.cli``: the ``tessera`` command."""

from tessera.flows.cli import main

main()
