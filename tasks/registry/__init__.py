"""Registry: an evaluated model into MLflow, gated and promoted by alias.

:mod:`~tasks.registry.gate` decides (pure), :mod:`~tasks.registry.lineage` records where a
model came from, :mod:`~tasks.registry.mlflow_registry` holds every MLflow call, and
:mod:`~tasks.registry.register` puts one experiment through them.
"""
