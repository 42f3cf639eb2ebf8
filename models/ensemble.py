"""Several weights files run as one model: eval-mode predictions concatenated along the box axis before NMS.

``load(weights, device)`` is what val.py and detect.py call for their ``--weights`` (one path or several).
"""
from __future__ import annotations

from pathlib import Path

import torch

from models.weights import load_model


class Ensemble(torch.nn.Module):
    """Models sharing ``nc`` whose (B, N_i, no) eval predictions are joined into (B, sum N_i, no).

    ``stride`` is the member stride tensor with the largest maximum, so callers round image sizes for every
    member; ``names`` and ``nc`` are the first member's.
    """

    def __init__(self, models):
        super().__init__()
        self.models = torch.nn.ModuleList(models)
        first = models[0]
        if any(m.nc != first.nc for m in models):
            raise ValueError(f"ensemble models must share nc, got {[m.nc for m in models]}")
        self.names, self.nc = first.names, first.nc
        self.stride = max((m.stride for m in models), key=lambda s: float(s.max()))

    def forward(self, x, augment: bool = False):
        """x: (B, 3, H, W) -> ((B, N, no) concatenated predictions, None); no training outputs."""
        return torch.cat([m(x, augment=augment)[0] for m in self.models], 1), None


def load(weights, device) -> torch.nn.Module:
    """One model (or an Ensemble for several weights files), fused, eval mode, FP32 on ``device``."""
    weights = [weights] if isinstance(weights, (str, Path)) else list(weights)
    models = [load_model(w, device=device, fuse=True) for w in weights]
    return models[0] if len(models) == 1 else Ensemble(models).eval()
