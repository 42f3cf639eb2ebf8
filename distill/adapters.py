"""Student -> teacher channel adapters and the dummy forward that sizes them.

FGFI/CILF adapter: one 3x3 conv (stride 1, padding 1, bias) per level, or 1x1 with ``--kd-adapter-kernel 1``
(the connector CWD, PKD and Ultralytics use; a fraction of the cost), no activation: YOLOv5 features are
SiLU outputs and can be negative, so a trailing ReLU (as in the official FGFI VGG code) would make negative
teacher values unreachable. (FGD's 1x1 ``align`` lives inside distill.losses.FGDLoss.)
"""
from __future__ import annotations

import torch
from torch import nn

from distill.recorder import FeatureRecorder, unwrap


def build_adapters(student_channels: list[int], teacher_channels: list[int], kernel: int = 3) -> nn.ModuleList:
    """One Conv2d(C_s, C_t, kernel, 1, kernel // 2) per level; always built (even when C_s == C_t, FGFI learns it)."""
    if len(student_channels) != len(teacher_channels):
        raise ValueError(f"student has {len(student_channels)} distilled levels, teacher {len(teacher_channels)}")
    if kernel not in (1, 3):
        raise ValueError(f"adapter kernel must be 1 or 3, got {kernel}")
    return nn.ModuleList(nn.Conv2d(c_s, c_t, kernel, 1, kernel // 2)
                         for c_s, c_t in zip(student_channels, teacher_channels))


def adapt(adapters: nn.ModuleList, student_feats: list[torch.Tensor]) -> list[torch.Tensor]:
    """Apply adapter l to level l: list of (B, C_s, H, W) -> list of (B, C_t, H, W) float32."""
    return [adapter(feat.float()) for adapter, feat in zip(adapters, student_feats)]


@torch.no_grad()
def probe_features(model: nn.Module, recorder: FeatureRecorder, imgsz: int) -> list[tuple[int, int, int]]:
    """(C, H, W) of every recorded feature for one zero image of ``imgsz`` (square), from a dummy forward.

    The model runs in eval mode (BatchNorm statistics untouched) and its train/eval mode is restored.
    """
    bare = unwrap(model)
    was_training = bare.training
    parameter = next(bare.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    dtype = parameter.dtype if parameter is not None else torch.float32
    bare.eval()
    try:
        with recorder:
            bare(torch.zeros(1, 3, imgsz, imgsz, device=device, dtype=dtype))
        shapes = [tuple(feat.shape[1:]) for feat in recorder.features]
    finally:
        recorder.clear()
        bare.train(was_training)
    return shapes
