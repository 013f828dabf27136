"""`runtime.deterministic`: bit-identical GPU reruns at some speed cost.

CPU runs are already bit-identical on the same machine and torch build (all randomness comes from the
run's seeded generators). On CUDA, cuDNN autotuning and atomics-based kernels vary between runs;
this switch turns them off. CUBLAS_WORKSPACE_CONFIG must be set before cuBLAS starts, so it is set
here unless the user already chose one.
"""

from __future__ import annotations

import os

import torch
from omegaconf import DictConfig


def apply_determinism(cfg: DictConfig) -> None:
    if not cfg.runtime.get("deterministic", False):
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(True)
