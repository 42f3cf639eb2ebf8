"""Non-maximum suppression on decoded YOLOv5 outputs, built on torchvision.ops.batched_nms."""
from __future__ import annotations

import logging
import time

import torch
from torchvision.ops import batched_nms

from utils import boxes

LOGGER = logging.getLogger(__name__)


def non_max_suppression(
    prediction,
    conf_thres: float = 0.25,
    iou_thres: float = 0.45,
    classes=None,
    agnostic: bool = False,
    multi_label: bool = False,
    max_det: int = 300,
    max_nms: int = 30000,
    time_limit: float | None = None,
) -> list[torch.Tensor]:
    """Filter decoded predictions per image.

    Args:
        prediction: (bs, n, 5 + nc) rows ``[cx, cy, w, h, obj, cls_1..cls_nc]`` (sigmoided scores), or the
            model's eval tuple (its first element is used).
        multi_label: one row per (box, class) whose score obj*cls exceeds ``conf_thres`` (only when nc > 1).
        max_nms: keep at most this many top-scoring candidates before NMS (bounds the cost at conf 0.001).
        time_limit: seconds after which remaining images are skipped with a warning (upstream: 0.5 + 0.05 bs).
    Returns:
        list of (k, 6) tensors ``[x1, y1, x2, y2, conf, cls]`` sorted by descending conf, one per image.
    """
    if not 0 <= conf_thres <= 1 or not 0 <= iou_thres <= 1:
        raise ValueError(f"conf_thres={conf_thres} and iou_thres={iou_thres} must be within [0, 1]")
    if isinstance(prediction, (list, tuple)):
        prediction = prediction[0]
    bs, nc = prediction.shape[0], prediction.shape[2] - 5
    multi_label &= nc > 1
    time_limit = 0.5 + 0.05 * bs if time_limit is None else time_limit
    start = time.time()
    output = [torch.zeros((0, 6), device=prediction.device)] * bs
    for i, x in enumerate(prediction):
        x = x[x[:, 4] > conf_thres]
        if x.shape[0]:
            output[i] = _nms_one(x, nc, conf_thres, iou_thres, classes, agnostic, multi_label, max_det, max_nms)
        if time.time() - start > time_limit:
            LOGGER.warning(f"NMS time limit {time_limit:.3f}s exceeded after {i + 1}/{bs} images")
            break
    return output


def _nms_one(x, nc, conf_thres, iou_thres, classes, agnostic, multi_label, max_det, max_nms):
    scores = x[:, 5:] * x[:, 4:5] if nc else x[:, 4:5]  # conf = obj * cls
    box = boxes.xywh2xyxy(x[:, :4])
    if multi_label:
        i, j = (scores > conf_thres).nonzero(as_tuple=True)
        det = torch.cat((box[i], scores[i, j, None], j[:, None].float()), 1)
    else:
        conf, j = scores.max(1, keepdim=True)
        det = torch.cat((box, conf, j.float()), 1)[conf.view(-1) > conf_thres]
    if classes is not None:
        det = det[(det[:, 5:6] == torch.tensor(classes, device=det.device)).any(1)]
    if not det.shape[0]:
        return torch.zeros((0, 6), device=x.device)
    det = det[det[:, 4].argsort(descending=True)[:max_nms]]
    group = torch.zeros_like(det[:, 5]) if agnostic else det[:, 5]
    keep = batched_nms(det[:, :4], det[:, 4], group, iou_thres)[:max_det]
    return det[keep]
