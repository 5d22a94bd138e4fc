"""Tessera: tile satellite and medical imagery, train segmentation autoencoders and VAEs,
evaluate their latent spaces by clustering, register and apply the winners.

The code lives in the repository's top-level ``flows/``, ``tasks/`` and ``models/`` folders;
``tessera/flows``, ``tessera/tasks`` and ``tessera/models`` are links to them, so that every
import reads ``tessera.<room>.<module>`` in the source tree, in editable and in regular
installs alike, and no generic top-level ``flows``, ``tasks`` or ``models`` package is
installed.
"""
