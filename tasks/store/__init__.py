"""The tile store: the contract every stage reads, and the leaf of the house.

- ``format``: file names, version, index columns, the label fill value and ``StoreInfo``
  (``store.json``), defined once;
- ``reader``: ``TileStore``, random access to tiles;
- ``writer`` and ``shards``: one writer at a time, shards streamed to disk, built in staging
  and swapped into place;
- ``stats``: streaming, mergeable band statistics.

It imports no other room of the project but ``tasks.base`` (atomic writes, the output
rules, the error policy): the tiler writes through it, ``tessera.models`` reads through it.
"""
