"""The YOLOv5 (v7.0) detection loss: target assignment, CIoU box loss, objectness and class BCE.

Shapes used throughout:
- ``preds``: list of ``nl`` raw head outputs, each ``(bs, na, ny, nx, no)`` with ``no = 5 + nc`` logits.
- ``targets``: ``(nt, 6)`` rows ``[img_idx, cls, x, y, w, h]``, xywh normalised 0-1 to the network input.

The hyperparameter dict is never mutated: the per-term gains (scaled by 3/nl, nc/80 and (imgsz/640)^2) are
computed once into a frozen :class:`LossGains`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from utils import boxes

# Objectness weight per pyramid level, small strides first; P3 carries most small objects.
BALANCE_3 = (4.0, 1.0, 0.4)
BALANCE_N = (4.0, 1.0, 0.25, 0.06, 0.02)
NEIGHBOUR_G = 0.5  # a target also claims the neighbouring cell closer than g to its centre


@dataclass(frozen=True)
class LossGains:
    """Effective loss gains after the caller-independent scaling rule."""

    box: float
    obj: float
    cls: float
    anchor_t: float
    cls_pw: float = 1.0
    obj_pw: float = 1.0
    fl_gamma: float = 0.0
    label_smoothing: float = 0.0

    @classmethod
    def from_hyp(cls, hyp: dict, nl: int, nc: int, imgsz: int, label_smoothing: float | None = None) -> "LossGains":
        """box *= 3/nl, cls *= nc/80 * 3/nl, obj *= (imgsz/640)^2 * 3/nl (upstream train.py's rule)."""
        level = 3 / nl
        eps = hyp.get("label_smoothing", 0.0) if label_smoothing is None else label_smoothing
        return cls(
            box=float(hyp["box"]) * level,
            obj=float(hyp["obj"]) * (imgsz / 640) ** 2 * level,
            cls=float(hyp["cls"]) * nc / 80 * level,
            anchor_t=float(hyp.get("anchor_t", 4.0)),
            cls_pw=float(hyp.get("cls_pw", 1.0)),
            obj_pw=float(hyp.get("obj_pw", 1.0)),
            fl_gamma=float(hyp.get("fl_gamma", 0.0)),
            label_smoothing=float(eps),
        )


class FocalLoss(nn.Module):
    """Focal modulation (Lin et al. 2017) of an element-wise BCE-with-logits criterion; mean reduction."""

    def __init__(self, bce: nn.BCEWithLogitsLoss, gamma: float = 1.5, alpha: float = 0.25):
        super().__init__()
        self.bce = bce
        self.bce.reduction = "none"
        self.gamma, self.alpha = gamma, alpha

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = self.bce(logits, target)
        prob = logits.sigmoid()
        p_t = target * prob + (1 - target) * (1 - prob)
        alpha_t = target * self.alpha + (1 - target) * (1 - self.alpha)
        return (loss * alpha_t * (1.0 - p_t) ** self.gamma).mean()


@dataclass
class LevelTargets:
    """Positives of one level: image, anchor, row and column index, box target (dx, dy, w, h), anchor wh, class."""

    b: torch.Tensor
    a: torch.Tensor
    gj: torch.Tensor
    gi: torch.Tensor
    tbox: torch.Tensor
    anchors: torch.Tensor
    cls: torch.Tensor


def _neighbour_offsets(device) -> torch.Tensor:
    """(5, 2) offsets: own cell, then the left, up, right and down neighbours (cell = long(gxy - offset))."""
    return torch.tensor([[0, 0], [1, 0], [0, 1], [-1, 0], [0, -1]], device=device).float() * NEIGHBOUR_G


def build_level_targets(targets: torch.Tensor, anchors: torch.Tensor, ny: int, nx: int, anchor_t: float) -> LevelTargets:
    """Assign normalised targets (nt, 6) to one level with anchors (na, 2) in grid units.

    A (target, anchor) pair matches when the worst of the w and h ratios (taken both ways) is < anchor_t;
    each match claims its own cell plus the nearest horizontal and vertical neighbour cell when the centre
    lies in that half of its cell and more than one cell away from the image border (up to 3 cells).
    """
    device = targets.device
    scale = torch.tensor([nx, ny, nx, ny], device=device, dtype=targets.dtype)
    t = targets[:, 2:6] * scale  # (nt, 4) grid units
    r = t[None, :, 2:4] / anchors[:, None, :]  # (na, nt, 2)
    match = torch.max(r, 1 / r).amax(2) < anchor_t  # (na, nt)
    a_idx, t_idx = match.nonzero(as_tuple=True)
    gxy, gwh = t[t_idx, :2], t[t_idx, 2:]
    gxi = torch.tensor([nx, ny], device=device, dtype=gxy.dtype) - gxy
    near_low = (gxy % 1 < NEIGHBOUR_G) & (gxy > 1)  # left (x), up (y)
    near_high = (gxi % 1 < NEIGHBOUR_G) & (gxi > 1)  # right (x), down (y)
    use = torch.stack((torch.ones_like(near_low[:, 0]), near_low[:, 0], near_low[:, 1], near_high[:, 0], near_high[:, 1]))
    k_idx, p_idx = use.nonzero(as_tuple=True)  # offset kind, pair index (own cells first)
    off = _neighbour_offsets(device).to(gxy.dtype)[k_idx]
    cell = (gxy[p_idx] - off).long()
    gi, gj = cell[:, 0].clamp(0, nx - 1), cell[:, 1].clamp(0, ny - 1)
    tgt = targets[t_idx[p_idx]]
    a = a_idx[p_idx]
    tbox = torch.cat((gxy[p_idx] - torch.stack((gi, gj), 1).to(gxy.dtype), gwh[p_idx]), 1)
    return LevelTargets(tgt[:, 0].long(), a, gj, gi, tbox, anchors[a], tgt[:, 1].long())


class ComputeLoss:
    """YOLOv5 loss for a Detect-like head (duck-typed: ``.anchors`` (nl, na, 2) grid units, ``.nl .na .no``).

    ``components(preds, targets)`` returns per-image terms ``{'task/box', 'task/obj', 'task/cls'}`` (already
    multiplied by their gains); ``__call__`` returns ``(sum * bs, detached terms)``.
    """

    def __init__(self, detect: Any, hyp: dict, nc: int | None = None, imgsz: int = 640,
                 label_smoothing: float | None = None):
        self.detect = detect
        self.nl, self.na = int(detect.nl), int(detect.na)
        self.nc = int(detect.nc if nc is None else nc)
        self.gains = LossGains.from_hyp(hyp, self.nl, self.nc, imgsz, label_smoothing)
        self.balance = BALANCE_3 if self.nl == 3 else BALANCE_N[: self.nl]
        eps = self.gains.label_smoothing
        self.cp, self.cn = 1.0 - 0.5 * eps, 0.5 * eps
        self.bce_cls = self._criterion(self.gains.cls_pw)
        self.bce_obj = self._criterion(self.gains.obj_pw)

    def _criterion(self, pos_weight: float) -> nn.Module:
        bce = nn.BCEWithLogitsLoss(pos_weight=torch.tensor([pos_weight]))
        return FocalLoss(bce, self.gains.fl_gamma) if self.gains.fl_gamma > 0 else bce

    def build_targets(self, preds: list[torch.Tensor], targets: torch.Tensor) -> list[LevelTargets]:
        anchors = self.detect.anchors
        targets = targets.to(anchors.device, anchors.dtype)
        return [build_level_targets(targets, anchors[i], p.shape[2], p.shape[3], self.gains.anchor_t)
                for i, p in enumerate(preds)]

    def components(self, preds: list[torch.Tensor], targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-image loss terms (scalars with gradient), gains applied, not yet multiplied by batch size.

        Predictions are cast to FP32 first: under bf16/fp16 autocast the CIoU and BCE maths stay in full precision.
        """
        preds = [p.float() for p in preds]
        device = preds[0].device
        for crit in (self.bce_cls, self.bce_obj):
            crit.to(device)
        lbox, lobj, lcls = (torch.zeros((), device=device) for _ in range(3))
        for i, (p, lt) in enumerate(zip(preds, self.build_targets(preds, targets))):
            tobj = torch.zeros(p.shape[:4], dtype=p.dtype, device=device)
            if lt.b.numel():
                ps = p[lt.b, lt.a, lt.gj, lt.gi]  # (n, no)
                pxy = ps[:, :2].sigmoid() * 2 - 0.5
                pwh = (ps[:, 2:4].sigmoid() * 2) ** 2 * lt.anchors
                ciou = boxes.bbox_iou(torch.cat((pxy, pwh), 1), lt.tbox, ciou=True).squeeze(-1)
                lbox = lbox + (1.0 - ciou).mean()
                tobj[lt.b, lt.a, lt.gj, lt.gi] = ciou.detach().clamp(0).to(tobj.dtype)
                if self.nc > 1:
                    tcls = torch.full_like(ps[:, 5:], self.cn)
                    tcls[torch.arange(ps.shape[0], device=device), lt.cls] = self.cp
                    lcls = lcls + self.bce_cls(ps[:, 5:], tcls)
            lobj = lobj + self.bce_obj(p[..., 4], tobj) * self.balance[i]
        return {"task/box": lbox * self.gains.box, "task/obj": lobj * self.gains.obj, "task/cls": lcls * self.gains.cls}

    def __call__(self, preds: list[torch.Tensor], targets: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        terms = self.components(preds, targets)
        total = sum(terms.values()) * preds[0].shape[0]
        return total, {k: v.detach() for k, v in terms.items()}

