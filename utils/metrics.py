"""Detection metrics: prediction/label matching, average precision, the confusion matrix and fitness.

Numerics follow YOLOv5 v7.0 exactly (see ../shared/docs/yolov5-spec.md section 5): 101-point interpolated AP
integrated with the trapezoid rule, P and R reported at the confidence that maximises the box-filtered mean F1,
and the detection-order tie rule in ``match_predictions``.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from utils import boxes

IOU_THRESHOLDS = torch.linspace(0.5, 0.95, 10)  # mAP@0.5:0.95
EPS = 1e-16


def fitness(x: np.ndarray) -> np.ndarray:
    """Model fitness of (n, >=4) rows [P, R, mAP50, mAP50-95] -> (n,): 0.1 * mAP50 + 0.9 * mAP50-95."""
    w = np.array([0.0, 0.0, 0.1, 0.9])
    return (np.asarray(x)[:, :4] * w).sum(1)


def smooth(y: np.ndarray, f: float = 0.05) -> np.ndarray:
    """Box filter of fraction ``f`` (round(len*f*2)//2 + 1 taps), the series padded with copies of its edges."""
    nf = round(len(y) * f * 2) // 2 + 1
    pad = np.ones(nf // 2)
    yp = np.concatenate((pad * y[0], y, pad * y[-1]), 0)
    return np.convolve(yp, np.ones(nf) / nf, mode="valid")


def _unique_matches(pairs: np.ndarray, resort: bool) -> np.ndarray:
    """Reduce (k, 3) rows [label, detection, iou] to one-to-one matches.

    Rows are sorted by IoU descending and each detection keeps its first (best) label; the survivors come out
    ordered by detection index. With ``resort`` (the confusion matrix) they are sorted by IoU again before each
    label keeps its first row; without it (mAP matching, as upstream v7.0) a label keeps its lowest-index,
    i.e. most confident, detection among those whose best label it is.
    """
    if pairs.shape[0] > 1:
        pairs = pairs[pairs[:, 2].argsort()[::-1]]
        pairs = pairs[np.unique(pairs[:, 1], return_index=True)[1]]
        if resort:
            pairs = pairs[pairs[:, 2].argsort()[::-1]]
        pairs = pairs[np.unique(pairs[:, 0], return_index=True)[1]]
    return pairs


def match_predictions(detections: torch.Tensor, labels: torch.Tensor, iouv: torch.Tensor = IOU_THRESHOLDS):
    """Mark each detection correct or not at every IoU threshold (upstream ``process_batch``).

    detections: (N, 6) [x1, y1, x2, y2, conf, cls] sorted by descending conf; labels: (M, 5) [cls, x1, y1, x2, y2]
    in the same pixel space; iouv: (T,) thresholds. Returns an (N, T) bool tensor on the detections' device.
    """
    iouv = iouv.to(detections.device)
    correct = np.zeros((detections.shape[0], iouv.shape[0]), dtype=bool)
    if detections.shape[0] and labels.shape[0]:
        iou = boxes.box_iou(labels[:, 1:], detections[:, :4])  # (M, N)
        same_class = labels[:, 0:1] == detections[:, 5]
        for i in range(iouv.shape[0]):
            li, di = torch.where((iou >= iouv[i]) & same_class)
            if li.shape[0]:
                pairs = torch.stack((li.float(), di.float(), iou[li, di]), 1).cpu().numpy()
                pairs = _unique_matches(pairs, resort=False)
                correct[pairs[:, 1].astype(int), i] = True
    return torch.tensor(correct, dtype=torch.bool, device=detections.device)


def compute_ap(recall: np.ndarray, precision: np.ndarray):
    """AP of one PR curve: precision envelope, 101-point ``np.interp`` and the trapezoid rule.

    recall, precision: (n,) cumulative curves in descending-confidence order.
    Returns (ap, mpre, mrec) with the padded envelope (mpre) and recall (mrec) used for the PR plot.
    """
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([1.0], precision, [0.0]))
    mpre = np.flip(np.maximum.accumulate(np.flip(mpre)))
    x = np.linspace(0, 1, 101)
    ap = np.trapezoid(np.interp(x, mrec, mpre), x)
    return ap, mpre, mrec


def _class_curves(tp, conf, n_labels, px):
    """Per-class AP per IoU column plus P/R vs confidence (IoU 0.5 column) and the PR curve for plots."""
    tpc = tp.cumsum(0)
    fpc = (1 - tp).cumsum(0)
    recall = tpc / (n_labels + EPS)
    precision = tpc / (tpc + fpc)
    r = np.interp(-px, -conf, recall[:, 0], left=0)  # negative x: np.interp wants increasing xp
    p = np.interp(-px, -conf, precision[:, 0], left=1)
    ap = np.zeros(tp.shape[1])
    for j in range(tp.shape[1]):
        ap[j], mpre, mrec = compute_ap(recall[:, j], precision[:, j])
        if j == 0:
            pr = np.interp(px, mrec, mpre)
    return ap, p, r, pr


class Curves(NamedTuple):
    """The curves behind the metrics, for plots: px is the (1000,) confidence grid (and recall grid for ``pr``);
    p, r, f1 are (nc, 1000) per class vs confidence at IoU 0.5; pr is a list, one (1000,) precision-vs-recall
    curve per class that has predictions (in class order)."""

    px: np.ndarray
    pr: list
    p: np.ndarray
    r: np.ndarray
    f1: np.ndarray


class APStats(NamedTuple):
    """``ap_per_class`` output: tp, fp, p, r, f1 (nc,) at the confidence maximising the smoothed mean F1, ap (nc, T),
    classes (nc,) int ids, and the full curves."""

    tp: np.ndarray
    fp: np.ndarray
    p: np.ndarray
    r: np.ndarray
    f1: np.ndarray
    ap: np.ndarray
    classes: np.ndarray
    curves: Curves


def ap_per_class(tp, conf, pred_cls, target_cls) -> APStats:
    """Average precision per class (upstream ``ap_per_class``, less its plotting: see utils.metric_plots).

    tp: (n, T) bool/0-1 correctness of every prediction at T IoU thresholds; conf, pred_cls: (n,);
    target_cls: (m,) classes of all labels. Classes are the unique target classes (predicted-only classes
    are ignored).
    """
    tp, conf, pred_cls, target_cls = (np.asarray(a) for a in (tp, conf, pred_cls, target_cls))
    tp = tp.astype(np.float64).reshape(len(conf), -1)
    order = np.argsort(-conf)
    tp, conf, pred_cls = tp[order], conf[order], pred_cls[order]
    classes, nt = np.unique(target_cls, return_counts=True)
    nc, px = classes.shape[0], np.linspace(0, 1, 1000)
    ap, p, r = np.zeros((nc, tp.shape[1])), np.zeros((nc, 1000)), np.zeros((nc, 1000))
    py = []
    for ci, c in enumerate(classes):
        mask = pred_cls == c
        if not mask.any() or nt[ci] == 0:
            continue
        ap[ci], p[ci], r[ci], pr = _class_curves(tp[mask], conf[mask], nt[ci], px)
        py.append(pr)
    f1 = 2 * p * r / (p + r + EPS)
    curves = Curves(px, py, p, r, f1)
    i = smooth(f1.mean(0), 0.1).argmax() if nc else 0
    p, r, f1 = p[:, i], r[:, i], f1[:, i]
    tp = (r * nt).round()
    fp = (tp / (p + EPS) - tp).round()
    return APStats(tp, fp, p, r, f1, ap, classes.astype(int), curves)


class ValResults(NamedTuple):
    """What val.run reports per run, in train.py's results.csv order (so it also works as the old 7-tuple)."""

    precision: float
    recall: float
    map50: float
    map: float
    box_loss: float
    obj_loss: float
    cls_loss: float


class ConfusionMatrix:
    """(nc + 1) x (nc + 1) matrix indexed [predicted, true]; index nc is background.

    Row nc counts labels no detection matched (missed); column nc counts detections that matched no label
    (false positives). Built from detections above ``conf`` matched one-to-one at IoU > ``iou_thres``.
    """

    def __init__(self, nc: int, conf: float = 0.25, iou_thres: float = 0.45):
        self.matrix = np.zeros((nc + 1, nc + 1))
        self.nc, self.conf, self.iou_thres = nc, conf, iou_thres

    def process_batch(self, detections: torch.Tensor | None, labels: torch.Tensor):
        """detections: (N, 6) [x1, y1, x2, y2, conf, cls] or None; labels: (M, 5) [cls, x1, y1, x2, y2]
        (or (M,) classes when detections is None)."""
        if detections is None:
            for gc in labels.reshape(-1).int().tolist():
                self.matrix[self.nc, gc] += 1
            return
        detections = detections[detections[:, 4] > self.conf]
        gt_classes = labels[:, 0].int().tolist()
        det_classes = detections[:, 5].int().tolist()
        matches = np.zeros((0, 3))
        if labels.shape[0] and detections.shape[0]:
            iou = boxes.box_iou(labels[:, 1:], detections[:, :4])
            li, di = torch.where(iou > self.iou_thres)
            if li.shape[0]:
                pairs = torch.stack((li.float(), di.float(), iou[li, di]), 1).cpu().numpy()
                matches = _unique_matches(pairs, resort=True)
        m0, m1 = matches[:, 0].astype(int), matches[:, 1].astype(int)
        for i, gc in enumerate(gt_classes):
            j = m0 == i
            if j.sum() == 1:
                self.matrix[det_classes[m1[j][0]], gc] += 1
            else:
                self.matrix[self.nc, gc] += 1  # missed label
        # Upstream v7.0 skips this when nothing matched; we always count unmatched detections as background FPs.
        for i, dc in enumerate(det_classes):
            if not (m1 == i).any():
                self.matrix[dc, self.nc] += 1

    def tp_fp(self):
        """Per-class true positives (diagonal) and false positives (row sum minus diagonal), background excluded."""
        tp = self.matrix.diagonal()
        fp = self.matrix.sum(1) - tp
        return tp[:-1], fp[:-1]
