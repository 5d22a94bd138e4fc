"""The tile store: the contract every stage reads, and the leaf of the house.

- :mod:`tasks.store.format`: file names, version, index columns, the label fill value and
  :class:`~tasks.store.format.StoreInfo` (``store.json``), defined once;
- :mod:`tasks.store.reader`: :class:`~tasks.store.reader.TileStore`, random access to tiles;
- :mod:`tasks.store.writer` and :mod:`tasks.store.shards`: one writer at a time, shards
  streamed to disk, built in staging and swapped into place;
- :mod:`tasks.store.stats`: streaming, mergeable band statistics;
- :mod:`tasks.store.outputs`, :mod:`tasks.store.files` and :mod:`tasks.store.errors`: what a
  command may replace, atomic writes, and the one-line error policy that every layer uses.

It imports no other module of the project: the tiler writes through it, ``models`` reads
through it.
"""
