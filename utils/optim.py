"""Optimizer construction (three YOLOv5 parameter groups), LR lambdas and the warmup interpolation."""
from __future__ import annotations

import logging
import math
from typing import Callable, Iterable

import numpy as np
import torch
import torch.nn as nn

LOGGER = logging.getLogger(__name__)
NOMINAL_BATCH = 64  # weight decay and gradient accumulation are defined for this batch size


def _is_norm(module: nn.Module) -> bool:
    return any("Norm" in cls.__name__ for cls in type(module).__mro__ if cls.__module__.startswith("torch.nn"))


def param_groups(model: nn.Module) -> tuple[list, list, list]:
    """Split parameters into (biases, decayed weights, normalisation weights), in module order.

    Every parameter named ``bias`` is a bias; the ``weight`` of any ``torch.nn`` normalisation layer
    (BatchNorm*, LayerNorm, GroupNorm, ...) is a norm weight; everything else is decayed.
    """
    biases, decayed, norms = [], [], []
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if name == "bias":
                biases.append(p)
            elif name == "weight" and _is_norm(module):
                norms.append(p)
            else:
                decayed.append(p)
    return biases, decayed, norms


def scaled_weight_decay(weight_decay: float, batch_size: int, accumulate: int) -> float:
    """wd * batch_size * accumulate / 64: decay per optimizer step as if the batch were nominal."""
    return weight_decay * batch_size * accumulate / NOMINAL_BATCH


def accumulate_steps(batch_size: int) -> int:
    """Batches per optimizer step so that one step sees about 64 images."""
    return max(round(NOMINAL_BATCH / batch_size), 1)


def build_optimizer(model: nn.Module, name: str = "SGD", lr: float = 0.01, momentum: float = 0.937,
                    decay: float = 1e-5) -> torch.optim.Optimizer:
    """Group 0 = biases (no decay; gets warmup_bias_lr), group 1 = decayed weights, group 2 = norm weights."""
    biases, decayed, norms = param_groups(model)
    if name == "SGD":
        opt = torch.optim.SGD(biases, lr=lr, momentum=momentum, nesterov=True)
    elif name == "Adam":
        opt = torch.optim.Adam(biases, lr=lr, betas=(momentum, 0.999))
    elif name == "AdamW":
        opt = torch.optim.AdamW(biases, lr=lr, betas=(momentum, 0.999), weight_decay=0.0)
    elif name == "RMSProp":
        opt = torch.optim.RMSprop(biases, lr=lr, momentum=momentum)
    else:
        raise NotImplementedError(f"optimizer {name!r} not implemented; choose SGD, Adam or AdamW")
    opt.add_param_group({"params": decayed, "weight_decay": decay})
    opt.add_param_group({"params": norms, "weight_decay": 0.0})
    LOGGER.info(f"optimizer: {type(opt).__name__}(lr={lr}) with parameter groups "
                f"{len(norms)} weight(decay=0.0), {len(decayed)} weight(decay={decay}), {len(biases)} bias")
    return opt


def add_module_group(opt: torch.optim.Optimizer, params: Iterable[nn.Parameter], decay: float) -> None:
    """Append extra trainable parameters (a training step's own modules) as one more group."""
    params = [p for p in params if p.requires_grad]
    if params:
        opt.add_param_group({"params": params, "weight_decay": decay})


def linear_lambda(epochs: int, lrf: float) -> Callable[[float], float]:
    """lf(x) = (1 - x/epochs)(1 - lrf) + lrf: from 1 at epoch 0 down to lrf at the last epoch."""
    return lambda x: (1 - x / epochs) * (1.0 - lrf) + lrf


def cosine_lambda(epochs: int, lrf: float) -> Callable[[float], float]:
    """lf(x) = ((1 - cos(pi x / epochs)) / 2)(lrf - 1) + 1: a half-cosine from 1 down to lrf."""
    return lambda x: ((1 - math.cos(x * math.pi / epochs)) / 2) * (lrf - 1) + 1


def build_scheduler(opt: torch.optim.Optimizer, epochs: int, lrf: float, cos_lr: bool = False,
                    start_epoch: int = 0) -> tuple[torch.optim.lr_scheduler.LambdaLR, Callable]:
    lf = cosine_lambda(epochs, lrf) if cos_lr else linear_lambda(epochs, lrf)
    scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda=lf)
    scheduler.last_epoch = start_epoch - 1  # so a resumed run continues the schedule
    return scheduler, lf


def warmup_iterations(warmup_epochs: float, batches_per_epoch: int, minimum: int = 100) -> int:
    return max(round(warmup_epochs * batches_per_epoch), minimum)


def warmup(opt: torch.optim.Optimizer, ni: int, nw: int, lr_scale: float, hyp: dict) -> None:
    """Linear warmup at iteration ``ni`` of ``nw``: bias lr from warmup_bias_lr, others from 0, to
    ``initial_lr * lr_scale``; momentum from warmup_momentum to momentum where a group has momentum."""
    xi = [0, nw]
    for j, group in enumerate(opt.param_groups):
        start = hyp["warmup_bias_lr"] if j == 0 else 0.0
        group["lr"] = float(np.interp(ni, xi, [start, group["initial_lr"] * lr_scale]))
        if "momentum" in group:
            group["momentum"] = float(np.interp(ni, xi, [hyp["warmup_momentum"], hyp["momentum"]]))


def warmup_accumulate(ni: int, nw: int, batch_size: int) -> int:
    """Accumulation during warmup ramps from 1 to 64 / batch_size."""
    return max(1, int(np.interp(ni, [0, nw], [1, NOMINAL_BATCH / batch_size]).round()))
