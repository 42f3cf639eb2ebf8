"""The step contract between the training loop and what computes the loss (docs/design.md, "The step").

The loop (engine/loop.py) owns everything around a batch: AMP, accumulation, clipping, EMA, warmup,
schedules, validation and checkpoints. A *step* maps one batch to a loss. ``DetectionStep`` is the default;
``distill.step.DistillStep`` is the KD one. A step factory receives a ``StepContext`` once, after the EMA
exists and before the optimizer is built, and returns the step.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

import torch
from torch import nn

from utils.loss import ComputeLoss

DETECTION_TERMS = ("task/box", "task/obj", "task/cls")


class Step(Protocol):
    """Maps a batch to a loss.

    ``__call__`` returns ``(total, terms)``: ``total`` is the scalar to back-propagate, already multiplied by the
    batch size (YOLOv5's convention); ``terms`` maps each name of ``term_names`` to a detached per-image scalar
    (``task/...`` columns first in results.csv, the others after the learning rates).
    ``modules``: trainable modules of the step itself (adapters, FGD blocks) or None; the loop puts them in the
    optimizer, the gradient clipping, the checkpoint (under ``checkpoint_key``) and, under DDP, broadcasts them
    once and averages their gradients. ``state_dict``/``load_state_dict`` carry the step's own state on resume.
    """

    modules: nn.Module | None
    checkpoint_key: str | None
    term_names: tuple[str, ...]

    def __call__(self, model: nn.Module, imgs: torch.Tensor, targets: torch.Tensor, *, epoch: int,
                 iteration: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


@dataclass(frozen=True)
class StepContext:
    """What a step factory may use.

    model: the bare student (never DDP-wrapped); the EMA copy already exists, so hooks attached now stay off it.
    compute_loss: the detection loss the loop also uses for validation.
    opt: the command-line options, for factories with flags of their own (train_kd.py's).
    warmup_iters: the loop's warmup length in optimiser iterations (global, counted from epoch 0).
    batches_per_epoch, epochs: the loop's schedule; ``iteration = batch + batches_per_epoch * epoch``.
    main_process: rank 0 (or no DDP): the one that logs and writes files.
    """

    model: nn.Module
    compute_loss: ComputeLoss
    hyp: dict
    opt: argparse.Namespace
    device: torch.device
    data: dict
    imgsz: int
    save_dir: Path
    warmup_iters: int
    batches_per_epoch: int
    epochs: int
    main_process: bool


StepFactory = Callable[[StepContext], Step]


class DetectionStep:
    """The default step: the YOLOv5 detection loss on the model's raw training outputs."""

    modules = None
    checkpoint_key = None
    term_names = DETECTION_TERMS

    def __init__(self, compute_loss: ComputeLoss):
        self.compute_loss = compute_loss

    def __call__(self, model, imgs, targets, *, epoch, iteration):
        preds = model(imgs)
        # the loss in float32 even under the loop's autocast: CIoU and BCE lose too much in bf16/fp16
        with torch.autocast(device_type=imgs.device.type, enabled=False):
            return self.compute_loss([p.float() for p in preds], targets)

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def detection_step(ctx: StepContext) -> DetectionStep:
    """The default step factory."""
    return DetectionStep(ctx.compute_loss)
