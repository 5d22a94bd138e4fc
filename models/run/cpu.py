"""What CPU arithmetic depends on beyond the seed, pinned for results that reproduce on
other machines: the intra-op thread count and the instruction set of every kernel library
torch calls on the CPU (ATen's own vectorised kernels, oneDNN, MKL)."""

from __future__ import annotations

import os

# each library's name for the instruction set of one ``cpu_isa`` setting:
# ATen's vectorised kernels (ATEN_CPU_CAPABILITY), MKL's reproducible code path (MKL_CBWR)
ATEN_CAPABILITY = {"SSE41": "default", "AVX2": "avx2", "AVX512_CORE": "avx512"}
MKL_CODE_PATH = {"SSE41": "SSE4_1", "AVX2": "AVX2", "AVX512_CORE": "AVX512"}


def pin_cpu_kernels(threads: int | None, cpu_isa: str) -> None:
    """Fix the intra-op thread count (it splits reductions) and the instruction set of ATen,
    oneDNN and MKL (``DEFAULT``: leave them). Each library reads its setting at its first
    kernel, so this runs before any tensor arithmetic of the process; later it changes nothing
    (the launcher therefore also passes the settings to its children's environment)."""
    import torch  # here, so that the launcher reads the settings without importing torch

    if threads:
        torch.set_num_threads(threads)
    os.environ.update(cpu_kernel_environment(cpu_isa))


def cpu_kernel_environment(cpu_isa: str, threads: int | None = None) -> dict[str, str]:
    """The environment variables that pin ``cpu_isa`` (none for ``DEFAULT``) and OpenMP's
    thread count. ``torch.set_num_threads`` alone is not enough: torchrun sets
    ``OMP_NUM_THREADS=1`` for several processes per node and leaves it unset for one, and two
    processes on one node then trained other weights than one process on each of two nodes
    (measured, max difference 0.005; equal with the variable pinned)."""
    env = {"OMP_NUM_THREADS": str(threads)} if threads else {}
    if cpu_isa == "DEFAULT":
        return env
    return env | {
        "ATEN_CPU_CAPABILITY": ATEN_CAPABILITY[cpu_isa],
        "ONEDNN_MAX_CPU_ISA": cpu_isa,
        "MKL_CBWR": MKL_CODE_PATH[cpu_isa],
    }
