"""Exponential moving average of a model's weights (Mean Teacher style, as YOLOv5's ModelEMA)."""
from __future__ import annotations

import math
from copy import deepcopy

import torch
import torch.nn as nn

from utils.dist import de_parallel


def ema_decay(updates: int, decay: float = 0.9999, tau: float = 2000) -> float:
    """d(u) = decay * (1 - exp(-u / tau)): ramps from 0 so early updates follow the model closely."""
    return decay * (1 - math.exp(-updates / tau))


class ModelEMA:
    """Keeps ``ema = d * ema + (1 - d) * model`` over every floating-point state_dict entry (params and BN buffers).

    Integer buffers (e.g. ``num_batches_tracked``) are left untouched. The copy is in eval mode without grads.
    """

    def __init__(self, model: nn.Module, decay: float = 0.9999, tau: float = 2000, updates: int = 0):
        self.ema = deepcopy(de_parallel(model)).eval()
        self.ema.requires_grad_(False)
        self.decay, self.tau, self.updates = decay, tau, updates

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = ema_decay(self.updates, self.decay, self.tau)
        current = de_parallel(model).state_dict()
        for name, value in self.ema.state_dict().items():
            if value.dtype.is_floating_point:
                value.mul_(d).add_(current[name].detach().to(value.dtype), alpha=1 - d)

    def update_attr(self, model: nn.Module, include=("yaml", "nc", "names", "stride", "class_weights")) -> None:
        """Copy plain attributes from the model (not hyperparameters: nothing reads those off the model).

        Read-only properties (e.g. ``nc``/``stride`` derived from the head) are already carried by the copy.
        """
        src = de_parallel(model)
        for name in include:
            if isinstance(getattr(type(self.ema), name, None), property):
                continue
            if hasattr(src, name):
                setattr(self.ema, name, getattr(src, name))
