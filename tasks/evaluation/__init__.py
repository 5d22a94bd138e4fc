"""Evaluation: a trained model judged on the store's test tiles.

Clustering and representation metrics, the latent space's scores, cluster maps laid back on
the scenes, and the written outputs (``metrics.json``, tables, PNGs, ``report.md``).
"""
