"""Distillation masks from YOLOv5 targets: FGFI imitation masks and FGD foreground/background masks.

Pure tensor functions (``level_anchors`` reads a Detect head's buffers). ``targets`` is always (N, 6) float
rows ``[img_idx, cls, x, y, w, h]`` with the box
normalised (0-1) to the network input; feature maps are (B, C, H, W) with W the last axis, so x maps to
columns and y to rows everywhere below.
"""
from __future__ import annotations

import torch
from torch import nn


def level_anchors(detect: nn.Module, strides: list[float]) -> list[torch.Tensor]:
    """Anchors (na, 2) in grid units of the Detect level with each stride; ValueError if a stride has none."""
    out = []
    for stride in strides:
        matches = [i for i, s in enumerate(detect.stride.tolist()) if abs(s - stride) < 1e-3]
        if not matches:
            raise ValueError(f"no Detect level with stride {stride:g} (head strides {detect.stride.tolist()}): "
                             "FGFI/CILF masks need anchors, distil layers at the head's strides")
        out.append(detect.anchors[matches[0]])
    return out


def _targets_xyxy(targets: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(N, 6) targets -> (N, 4) xyxy boxes in feature-map units (normalised coords times (W, H))."""
    x, y, w, h = targets[:, 2], targets[:, 3], targets[:, 4], targets[:, 5]
    return torch.stack(((x - w / 2) * width, (y - h / 2) * height, (x + w / 2) * width, (y + h / 2) * height), 1)


def _iou_matrix(boxes1: torch.Tensor, boxes2: torch.Tensor, eps: float = 1e-9) -> torch.Tensor:
    """(P, 4) xyxy, (K, 4) xyxy -> (P, K) IoU."""
    top_left = torch.maximum(boxes1[:, None, :2], boxes2[None, :, :2])
    bottom_right = torch.minimum(boxes1[:, None, 2:], boxes2[None, :, 2:])
    inter = (bottom_right - top_left).clamp(min=0).prod(2)
    area1 = (boxes1[:, 2:] - boxes1[:, :2]).prod(1)
    area2 = (boxes2[:, 2:] - boxes2[:, :2]).prod(1)
    return inter / (area1[:, None] + area2[None, :] - inter + eps)


def fgfi_mask(targets: torch.Tensor, anchors: torch.Tensor, feat_shape: tuple[int, int], batch_size: int,
              psi: float = 0.5) -> torch.Tensor:
    """FGFI fine-grained imitation mask of one level (Wang et al., CVPR 2019; spec section 3).

    Args:
        targets: (N, 6) ``[img_idx, cls, x, y, w, h]``, normalised xywh. Only these GTs are used (for the
            ``matched`` assignment pass the subset matched to this level).
        anchors: (na, 2) anchor (w, h) of this level in grid units (pixels / stride). We use the
            *teacher's* anchors: they define "near an object" for the features being imitated.
        feat_shape: (H, W) of the level.
        batch_size: B.
        psi: threshold factor; a position is lit when some anchor there has IoU > psi * (the GT's best IoU).
    Returns:
        (B, 1, H, W) float mask of 0/1; all zero for images without GT.
    """
    height, width = feat_shape
    device = anchors.device
    mask = torch.zeros(batch_size, height * width, device=device)
    if targets.shape[0] == 0:
        return mask.view(batch_size, 1, height, width)
    rows = torch.arange(height, device=device, dtype=torch.float32) + 0.5  # i, along H
    cols = torch.arange(width, device=device, dtype=torch.float32) + 0.5  # j, along W
    cy, cx = torch.meshgrid(rows, cols, indexing="ij")  # (H, W) each
    centres = torch.stack((cx, cy), -1).view(-1, 1, 2)  # (H*W, 1, 2) as (x, y)
    half = anchors.float().view(1, -1, 2) / 2  # (1, na, 2)
    anchor_boxes = torch.cat((centres - half, centres + half), -1).view(-1, 4)  # (H*W*na, 4)
    gt_boxes = _targets_xyxy(targets.float().to(device), height, width)  # (K, 4)
    iou = _iou_matrix(anchor_boxes, gt_boxes).view(height * width, anchors.shape[0], -1)  # (H*W, na, K)
    best = iou.amax(dim=(0, 1))  # (K,) M_k
    lit = (iou > psi * best).any(dim=1)  # (H*W, K): strict '>' so a zero-area GT lights nothing
    image_index = targets[:, 0].long().to(device)
    mask.index_add_(0, image_index, lit.T.float())  # union over the GTs of each image
    return (mask > 0).float().view(batch_size, 1, height, width)


def matched_to_level(targets: torch.Tensor, anchors: torch.Tensor, feat_shape: tuple[int, int],
                     anchor_t: float = 4.0) -> torch.Tensor:
    """(N,) bool: GTs that YOLOv5's assigner matches to some anchor of this level.

    A GT matches anchor a when max(r, 1/r) < anchor_t for both w and h ratios, r = gt_wh / anchor_wh, with
    both in grid units of the level. ``anchors``: (na, 2) grid units; ``feat_shape``: (H, W).
    """
    height, width = feat_shape
    gt_wh = targets[:, 4:6].float().to(anchors.device) * torch.tensor([width, height], device=anchors.device)
    ratio = gt_wh[:, None, :] / anchors.float()[None]  # (N, na, 2)
    worst = torch.maximum(ratio, 1 / ratio).amax(2)  # (N, na)
    return (worst < anchor_t).any(1)


def fgfi_masks(targets: torch.Tensor, anchors: torch.Tensor, feat_shapes: list[tuple[int, int]],
               batch_size: int, psi: float = 0.5, assign: str = "all", anchor_t: float = 4.0
               ) -> list[torch.Tensor]:
    """FGFI masks for every level: a list of (B, 1, H_l, W_l).

    ``anchors``: (nl, na, 2) grid units (teacher's Detect ``anchors``), one row per entry of ``feat_shapes``.
    ``assign``: ``all`` (every GT on every level) or ``matched`` (only GTs the YOLOv5 assigner would match
    to that level define its mask; the FGFI authors' advice for FPNs).
    """
    if assign not in ("all", "matched"):
        raise ValueError(f"assign must be 'all' or 'matched', got {assign!r}")
    masks = []
    for level, shape in enumerate(feat_shapes):
        level_targets = targets
        if assign == "matched" and targets.shape[0]:
            level_targets = targets[matched_to_level(targets, anchors[level], shape, anchor_t).to(targets.device)]
        masks.append(fgfi_mask(level_targets, anchors[level], shape, batch_size, psi))
    return masks


def fgd_masks(targets: torch.Tensor, feat_shape: tuple[int, int], batch_size: int,
              device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """FGD foreground and background masks of one level (Yang et al., CVPR 2022; spec section 6).

    A box spans rows floor(y1_l)..ceil(y2_l) and columns floor(x1_l)..ceil(x2_l) inclusive, with
    x_l = x_norm * W_l, y_l = y_norm * H_l, and carries 1 / (rows * cols) computed from these unclipped
    extents (so a box touching the right edge counts a column it cannot fill, as the official code does).
    Overlaps keep the maximum value (the smaller box wins); starts below 0 are clamped, never wrapped.

    Returns:
        fg_mask (B, H, W): 1/area inside boxes, 0 elsewhere.
        bg_mask (B, H, W): 1/count(fg == 0) where fg == 0; an image without GT is uniform 1/(H*W); an image
        fully covered by boxes is all zero.
    """
    height, width = feat_shape
    device = targets.device if device is None else device
    fg_mask = torch.zeros(batch_size, height * width, device=device)
    if targets.shape[0]:
        boxes = _targets_xyxy(targets.float().to(device), height, width)
        wmin, hmin = boxes[:, 0].floor(), boxes[:, 1].floor()
        wmax, hmax = boxes[:, 2].ceil(), boxes[:, 3].ceil()
        value = 1.0 / (hmax - hmin + 1) / (wmax - wmin + 1)  # (K,)
        rows = torch.arange(height, device=device, dtype=torch.float32)
        cols = torch.arange(width, device=device, dtype=torch.float32)
        in_rows = (rows[None] >= hmin[:, None]) & (rows[None] <= hmax[:, None])  # (K, H)
        in_cols = (cols[None] >= wmin[:, None]) & (cols[None] <= wmax[:, None])  # (K, W)
        inside = (in_rows[:, :, None] & in_cols[:, None, :]).view(len(boxes), -1)  # (K, H*W)
        per_box = inside.float() * value[:, None]
        image_index = targets[:, 0].long().to(device)[:, None].expand_as(per_box)
        fg_mask.scatter_reduce_(0, image_index, per_box, reduce="amax", include_self=True)
    background = (fg_mask == 0).float()
    count = background.sum(1, keepdim=True)
    bg_mask = torch.where(count > 0, background / count.clamp(min=1), torch.zeros_like(background))
    return fg_mask.view(batch_size, height, width), bg_mask.view(batch_size, height, width)
