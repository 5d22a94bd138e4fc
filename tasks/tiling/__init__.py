"""Tiling: scenes cut into tiles and written into the store.

Tile and split parameters (validated once), the tile grid and its georeferencing, leakage-free
splits, scene planes (a raster, or the slices of a volume) and the cut itself, which streams
tiles through :mod:`tessera.tasks.store`.
"""
