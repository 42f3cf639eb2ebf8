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


Generator = torch.Generator | np.random.Generator


def rng_state(generators: dict[str, Generator] | None = None) -> dict:
    """The states of Python's, numpy's and torch's global generators (CUDA too, when initialised) and of the named
    ``generators``, as plain data a ``weights_only`` checkpoint can hold (tensors, ints, lists, dicts)."""
    legacy = np.random.get_state(legacy=False)
    legacy["state"]["key"] = legacy["state"]["key"].tolist()
    version, internal, gauss = random.getstate()
    state = {"python": [version, list(internal), gauss], "numpy": legacy, "torch": torch.get_rng_state(),
             "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [], "generators": {}}
    for name, g in (generators or {}).items():
        state["generators"][name] = g.get_state() if isinstance(g, torch.Generator) else g.bit_generator.state
    return state


def set_rng_state(state: dict, generators: dict[str, Generator] | None = None) -> None:
    """Restore what ``rng_state`` captured; a named generator missing from ``state`` keeps its own state."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    legacy = dict(state["numpy"])
    legacy["state"] = {**legacy["state"], "key": np.asarray(legacy["state"]["key"], dtype=np.uint32)}
    np.random.set_state(legacy)
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    for name, g in (generators or {}).items():
        if name in state["generators"]:
            if isinstance(g, torch.Generator):
                g.set_state(state["generators"][name])
            else:
                g.bit_generator.state = state["generators"][name]
