"""Registry: an evaluated model into MLflow, gated and promoted by alias.

``gate`` decides (pure), ``lineage`` records where a model came from, ``mlflow_registry``
holds every MLflow call, and ``register`` puts one experiment through them.
"""
