"""Deterministic seeding of Python, numpy and torch."""
from __future__ import annotations

import os
import random

import numpy as np
import torch


def init_seeds(seed: int = 0, deterministic: bool = False) -> None:
    """Seed random, numpy and torch (all devices); optionally force deterministic torch algorithms.

    Deterministic mode sets ``CUBLAS_WORKSPACE_CONFIG`` (required by cuBLAS for reproducible matmuls) and
    warns instead of failing for ops without a deterministic implementation.
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        os.environ.setdefault("PYTHONHASHSEED", str(seed))


def seed_worker(worker_id: int) -> None:
    """DataLoader worker_init_fn: derive each worker's numpy/random seed from torch's per-worker seed."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
