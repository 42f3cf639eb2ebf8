"""What one training run holds: fixed options, the built components, and the progress that changes.

``train.py`` builds a ``Trainer`` (``build_run``); engine/loop.py runs it; engine/checkpointing.py saves and
restores it. Nothing here reads the command line.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from engine.step import DETECTION_TERMS, Step
from utils import amp, dist
from utils.callbacks import Callbacks
from utils.ema import ModelEMA
from utils.metrics import ValResults

# validate(model, half, plots) -> (P, R, mAP50, mAP50-95, val box, obj, cls), per-class mAP50-95
Validator = Callable[[nn.Module, bool, bool], tuple[ValResults, np.ndarray]]
NO_RESULTS = ValResults(*(0.0,) * 7)


@dataclass(frozen=True)
class LoopOptions:
    """The loop's fixed settings. ``epochs`` is the total (a resumed fine-tune adds to it); ``stride`` is the
    grid multiple image sizes round to (--multi-scale); ``warmup_iters`` the linear-warmup length in iterations."""

    epochs: int
    batch_size: int
    imgsz: int
    stride: int
    warmup_iters: int
    multi_scale: bool = False
    image_weights: bool = False
    validate_every_epoch: bool = True  # --noval: only the final epoch
    save_every_epoch: bool = True  # --nosave: only the final checkpoint
    save_period: int = -1
    patience: int = 100
    plots: bool = True
    loss_gain: float = 1.0  # 4 with --quad: its batches hold a quarter of the images


@dataclass
class Progress:
    """What changes while training; a checkpoint restores all of it (engine/checkpointing.py)."""

    start_epoch: int = 0
    best_fitness: float = 0.0
    accumulate: int = 1  # batches per optimiser step (nominal batch 64; ramps up during warmup)
    last_opt_step: int = -1
    early_stop: dict = field(default_factory=dict)  # EarlyStopping.state_dict() after the last epoch
    class_maps: np.ndarray | None = None  # per-class mAP50-95 of the last validation (--image-weights)
    results: ValResults = NO_RESULTS  # the last validation's metrics and losses
    term_names: list[str] = field(default_factory=lambda: list(DETECTION_TERMS))


@dataclass
class Trainer:
    """The built run. ``model`` may be DDP-wrapped; ``ema`` exists on the main process only.

    lr_lambda: epoch -> learning-rate factor of the scheduler (warmup ramps towards it). clip_params: everything
    the gradient clip covers (model + step modules); step_params: the step's trainable parameters.
    options_record: the run's options as plain data, written into every checkpoint.
    """

    options: LoopOptions
    model: nn.Module
    ema: ModelEMA | None
    step: Step
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    lr_lambda: Callable[[float], float]
    scaler: torch.amp.GradScaler
    precision: amp.Precision
    train_loader: torch.utils.data.DataLoader
    dataset: torch.utils.data.Dataset
    validate: Validator
    hyp: dict
    nc: int
    names: dict
    device: torch.device
    save_dir: Path
    callbacks: Callbacks
    options_record: dict
    clip_params: list[nn.Parameter]
    step_params: list[nn.Parameter]
    rng: np.random.Generator
    class_weights: np.ndarray
    progress: Progress

    @property
    def main(self) -> bool:
        return dist.is_main_process()

    @property
    def weights_dir(self) -> Path:
        return self.save_dir / "weights"
