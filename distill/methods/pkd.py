"""PKD (Cao et al., NeurIPS 2022): imitate the teacher's features after standardising both, "1 - Pearson".

Each map, student and teacher alike, is normalised per channel to zero mean and unit variance over the batch and
all positions, (N, C, H, W) -> (C, N*H*W), with the unbiased std plus 1e-6 in the denominator (the reference);
the loss per level is half the mean squared error between the normalised maps, which is close to 1 - r for the
Pearson correlation r of each channel. ``--pkd-norm sample`` normalises per sample and channel over the H*W
positions instead (a variant, not the reference).

Connector: none where the channel counts match; elsewhere a 1x1 conv on the student (no bias: the mean
subtraction removes it, so it would never get a gradient). ``modules`` is None when every level matches, else
one entry per level (``nn.Identity`` where the channels match). Terms: one per level, named like CWD's
(``distill/pkd_p3``, ``_p4``, ``_p5``; ``_l<index>`` with ``--kd-layers``), so each level's share is visible.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from distill.methods.base import Method, Setup, level_names

STD_EPS = 1e-6  # added to the std, as in the reference


@dataclass(frozen=True)
class PKDOptions:
    norm: str = field(default="batch", metadata={
        "choices": ("batch", "sample"),
        "help": "PKD standardisation per channel over the batch and positions (batch, the reference) or per "
                "sample and channel over the positions (sample)"})


def standardise(feat: torch.Tensor, per_sample: bool = False) -> torch.Tensor:
    """(N, C, H, W) -> same shape, (x - mean) / (unbiased std + 1e-6) per channel over (N, H, W), or over (H, W)
    for each sample with ``per_sample``."""
    dims = (2, 3) if per_sample else (0, 2, 3)
    mean = feat.mean(dim=dims, keepdim=True)
    std = feat.std(dim=dims, keepdim=True, unbiased=True)
    return (feat - mean) / (std + STD_EPS)


def pkd_loss(student: torch.Tensor, teacher: torch.Tensor, per_sample: bool = False) -> torch.Tensor:
    """Half the MSE between the standardised maps of one level. student, teacher: (N, C, H, W) -> scalar."""
    if student.shape != teacher.shape:
        raise ValueError(f"PKD needs equal shapes, got student {tuple(student.shape)} teacher {tuple(teacher.shape)}")
    return F.mse_loss(standardise(student.float(), per_sample), standardise(teacher.detach().float(), per_sample)) / 2


class PKD(Method):
    name = "pkd"
    Options = PKDOptions
    default_weight = 0.03  # measured on BCCD: 0.2-0.3x the detection loss (docs/design.md, "CWD and PKD")
    term_names = ("distill/pkd_p3", "distill/pkd_p4", "distill/pkd_p5")  # YOLOv5's three head levels

    def __init__(self, config, setup: Setup):
        super().__init__(config, setup)
        pairs = list(zip(setup.student_channels, setup.teacher_channels))
        self.term_names = level_names("pkd", setup, config.layers)  # this run's levels (class value: P3-P5)
        if any(c_s != c_t for c_s, c_t in pairs):
            self.modules = nn.ModuleList(nn.Identity() if c_s == c_t else nn.Conv2d(c_s, c_t, 1, bias=False)
                                         for c_s, c_t in pairs)
        self.connectors = self.modules if self.modules is not None else [nn.Identity()] * len(pairs)

    def terms(self, student_feats, teacher_feats, outputs, targets, shared):
        per_sample = self.options.norm == "sample"
        return {name: self.weight * pkd_loss(connector(student.float()), teacher, per_sample)
                for name, connector, student, teacher in zip(self.term_names, self.connectors, student_feats,
                                                              teacher_feats)}
