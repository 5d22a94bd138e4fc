"""Training launch: the run configuration written, ``torchrun`` started, errors relayed in one
line. The training itself is :mod:`tessera.models.run.fit`."""
