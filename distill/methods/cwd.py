"""CWD, channel-wise distillation (Shu et al., ICCV 2021): per channel, a softmax over the H*W positions.

For every sample n and teacher channel c, p_T = softmax(T_nc / tau) and p_S = softmax(S_nc / tau) over the H*W
positions, S being the student's features through a 1x1 connector to the teacher's channels (always built, also
when the channels match: the paper's and the spec's "S after a 1x1 connector"). Per level::

    loss = tau^2 * sum_{n, c} sum_i p_T,i (log p_T,i - log p_S,i) / (N * C)

The connector has no bias: the softmax over positions does not change when a channel is shifted by a constant,
so a bias would never receive a gradient. ``--cwd-tau`` defaults to the paper's 4 for detection.
``--cwd-norm bn`` is RTMDet's variant (mmyolo's distillation, used there with ``--cwd-tau 1``): the teacher's
features pass through an affine-free BatchNorm, the student's connector is conv + affine-free BatchNorm, both
with batch statistics only (no running buffers: a pure per-channel standardisation over the batch). The spec
says "conv + BN" for the student; ours is affine-free by choice: a BN scale would act as a learnable temperature
on the student's side only, and its shift is discarded by the softmax anyway.

Terms: one per distilled level, ``distill/cwd_p3``, ``distill/cwd_p4``, ``distill/cwd_p5`` for YOLOv5's head
levels (p = log2 of the level's stride, the teacher head's ``stride`` = imgsz / H; a P6 model adds
``cwd_p6``); with ``--kd-layers`` the levels are named by layer index (``distill/cwd_l17``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from distill.methods.base import Method, Setup, level_names

BN_EPS = 1e-5  # BatchNorm2d's default, for the teacher's affine-free normalisation (--cwd-norm bn)


@dataclass(frozen=True)
class CWDOptions:
    tau: float = field(default=4.0, metadata={
        "help": "CWD temperature of the spatial softmax (default 4, the paper's for detection; RTMDet uses 1 "
                "with --cwd-norm bn)", "evolve": (1, 0.5, 10.0)})
    norm: str = field(default="none", metadata={
        "choices": ("none", "bn"),
        "help": "CWD normalisation: none (the paper), or bn (RTMDet: affine-free BatchNorm on the teacher's "
                "features and after the student's 1x1 connector)"})

    def __post_init__(self):
        if self.tau <= 0:
            raise ValueError("temperatures must be positive")


def cwd_loss(student: torch.Tensor, teacher: torch.Tensor, tau: float) -> torch.Tensor:
    """Channel-wise KL(p_T || p_S) of one level. student, teacher: (N, C, H, W), same shape -> scalar.

    tau^2 * sum over samples, channels and positions of p_T (log p_T - log p_S), divided by N * C.
    """
    if student.shape != teacher.shape:
        raise ValueError(f"CWD needs equal shapes, got student {tuple(student.shape)} teacher {tuple(teacher.shape)}")
    n, c = teacher.shape[:2]
    log_p_teacher = F.log_softmax(teacher.detach().float().flatten(2) / tau, dim=2)
    log_p_student = F.log_softmax(student.float().flatten(2) / tau, dim=2)
    kl = (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum()
    return kl * tau ** 2 / (n * c)


def build_connector(c_student: int, c_teacher: int, norm: str) -> nn.Module:
    """1x1 conv C_s -> C_t without bias (see the module doc), followed by an affine-free BN for ``norm='bn'``."""
    conv = nn.Conv2d(c_student, c_teacher, 1, bias=False)
    if norm == "none":
        return conv
    return nn.Sequential(conv, nn.BatchNorm2d(c_teacher, affine=False, track_running_stats=False))


class CWD(Method):
    name = "cwd"
    Options = CWDOptions
    default_weight = 0.1  # measured on BCCD: 0.2-0.3x the detection loss (docs/design.md, "CWD and PKD")
    term_names = ("distill/cwd_p3", "distill/cwd_p4", "distill/cwd_p5")  # YOLOv5's three head levels

    def __init__(self, config, setup: Setup):
        super().__init__(config, setup)
        self.term_names = level_names("cwd", setup, config.layers)  # this run's levels (class value: P3-P5)
        self.modules = nn.ModuleList(build_connector(c_s, c_t, self.options.norm)
                                     for c_s, c_t in zip(setup.student_channels, setup.teacher_channels))
    def terms(self, student_feats, teacher_feats, outputs, targets, shared):
        out = {}
        for name, connector, student, teacher in zip(self.term_names, self.modules, student_feats, teacher_feats):
            teacher = teacher.detach().float()
            if self.options.norm == "bn":  # affine-free BN, batch statistics: no parameters, no buffers
                teacher = F.batch_norm(teacher, None, None, training=True, eps=BN_EPS)
            loss = cwd_loss(connector(student.float()), teacher, self.options.tau)
            out[name] = self.weight * loss
        return out
