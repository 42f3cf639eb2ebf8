"""Device selection (never mutates CUDA_VISIBLE_DEVICES or any other environment variable)."""
from __future__ import annotations

import logging

import torch

LOGGER = logging.getLogger(__name__)


def select_device(device="", batch_size: int = 0) -> torch.device:
    """'' -> first CUDA device if any else CPU; 'cpu'; '0' or 'cuda:0'; '0,1' -> cuda:0 (DDP picks per rank);
    'mps'. Raises a clear error when a requested CUDA device is absent."""
    spec = str(device).strip().lower().replace("cuda:", "").replace(" ", "")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise ValueError("--device mps requested but MPS is not available")
        return torch.device("mps")
    if spec == "":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    ids = [int(x) for x in spec.split(",") if x != ""]
    if not torch.cuda.is_available() or max(ids) >= torch.cuda.device_count():
        raise ValueError(
            f"--device {device} requested but only {torch.cuda.device_count()} CUDA device(s) are available; "
            "use --device cpu"
        )
    if batch_size and len(ids) > 1 and batch_size % len(ids):
        raise ValueError(f"batch size {batch_size} is not a multiple of the {len(ids)} GPUs")
    return torch.device(f"cuda:{ids[0]}")
