"""What CPU arithmetic depends on beyond the seed, pinned for results that reproduce on
other machines: the intra-op thread count and the instruction set of oneDNN and MKL kernels."""

from __future__ import annotations

import os

import torch

# MKL's conditional numerical reproducibility code path for each oneDNN instruction set
MKL_CODE_PATH = {"SSE41": "SSE4_1", "AVX2": "AVX2", "AVX512_CORE": "AVX512"}


def pin_cpu_kernels(threads: int | None, cpu_isa: str) -> None:
    """Fix the intra-op thread count (it splits reductions) and the instruction set of oneDNN
    and MKL (``DEFAULT``: leave it). Both libraries read theirs at their first kernel, so this
    runs before any convolution or matrix product of the process; later it changes nothing."""
    if threads:
        torch.set_num_threads(threads)
    if cpu_isa != "DEFAULT":
        os.environ["ONEDNN_MAX_CPU_ISA"] = cpu_isa
        os.environ["MKL_CBWR"] = MKL_CODE_PATH[cpu_isa]  # MKL's matrix products likewise
