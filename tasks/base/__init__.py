"""The base room, under every other room of ``tasks`` (and the only one of them, besides the
tile store's format, reader and band statistics, that ``tessera.models`` may import):

- ``collector``: the garbage collector's thresholds in Tessera's own processes;
- ``error_policy``: the one-line error policy every layer uses (what reaches a user, what
  names the file);
- ``files``: atomic writes, per-attempt staging names, the directory swap, the YAML reader;
- ``lean_imports``: torchmetrics' import of ``scipy.signal``, skipped in Tessera's processes;
- ``outputs``: what a command may write or replace, recognised before any work;
- ``startup``: what each entry point (the CLI, a training rank) does first.

It imports no other module of the project.
"""
