"""Validation during and after training, through val.py's ``run`` (handed in by train.py)."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from models import weights as model_weights
from utils.callbacks import Callbacks
from utils.loss import ComputeLoss
from utils.metrics import ValResults

LOGGER = logging.getLogger("train")


@dataclass
class Evaluation:
    """A training run's validation: every epoch on the EMA (``__call__``, the loop's Validator) and, at the end,
    on best.pt (``final``). ``batch_size`` is per rank (twice the training one, as upstream). ``run_val`` is
    ``val.run`` (passed in: the engine imports no script)."""

    data: dict
    val_loader: torch.utils.data.DataLoader | None
    compute_loss: ComputeLoss
    batch_size: int
    imgsz: int
    single_cls: bool
    save_dir: Path
    callbacks: Callbacks
    run_val: Callable[..., tuple]  # val.run

    def __call__(self, model: nn.Module, half: bool, plots: bool) -> tuple[ValResults, np.ndarray]:
        """Inference in the training precision (upstream: ``half=amp``); val.py keeps the EMA itself FP32 under
        bf16 (autocast, no conversion) and computes losses and metrics in FP32."""
        res, maps, _ = self.run_val(self.data, batch_size=self.batch_size, imgsz=self.imgsz, half=half, model=model,
                                    single_cls=self.single_cls, dataloader=self.val_loader, save_dir=self.save_dir,
                                    plots=plots, callbacks=self.callbacks, compute_loss=self.compute_loss)
        return res, maps

    def final(self, weights: Path, device: torch.device, plots: bool) -> ValResults:
        """best.pt, fused, in FP32, with upstream's final settings (COCO: IoU 0.65 and a JSON for pycocotools)."""
        LOGGER.info(f"\nValidating {weights}...")
        is_coco = str(self.data.get("val", "")).endswith("coco/val2017.txt")
        model = model_weights.load_model(weights, device, fuse=True)
        res, _, _ = self.run_val(self.data, batch_size=self.batch_size, imgsz=self.imgsz, model=model,
                                 iou_thres=0.65 if is_coco else 0.60, single_cls=self.single_cls,
                                 dataloader=self.val_loader, save_dir=self.save_dir, save_json=is_coco, verbose=True,
                                 plots=plots, callbacks=self.callbacks, compute_loss=self.compute_loss)
        return res
