"""Training augmentations (spec 4.4): mosaic placement, copy-paste, random perspective, MixUp, HSV.

Every function takes an explicit ``rng`` (``numpy.random.Generator``) so a seeded loader is reproducible
whatever the worker count. Label arrays here are (n, 5) ``cls x1 y1 x2 y2`` in pixels unless noted;
images are (H, W, 3) uint8 BGR.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from utils import boxes
from utils.letterbox import PAD_VALUE

FILL = (PAD_VALUE, PAD_VALUE, PAD_VALUE)


def mosaic_placement(k: int, xc: int, yc: int, w: int, h: int, s2: int):
    """Where tile ``k`` (0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right of the centre (xc, yc)) of a
    (h, w) image goes on an (s2, s2) canvas: returns the canvas slice (x1a, y1a, x2a, y2a) and the image
    slice (x1b, y1b, x2b, y2b); the image is anchored at the centre and cropped at the canvas border."""
    if k == 0:
        a = max(xc - w, 0), max(yc - h, 0), xc, yc
    elif k == 1:
        a = xc, max(yc - h, 0), min(xc + w, s2), yc
    elif k == 2:
        a = max(xc - w, 0), yc, xc, min(s2, yc + h)
    else:
        a = xc, yc, min(xc + w, s2), min(s2, yc + h)
    cw, ch = a[2] - a[0], a[3] - a[1]
    x1b = w - cw if k in (0, 2) else 0  # left tiles keep their right part, right tiles their left part
    y1b = h - ch if k in (0, 1) else 0  # top tiles keep their bottom part
    return a, (x1b, y1b, x1b + cw, y1b + ch)


def build_mosaic(tiles, s: int, centre: tuple[int, int]):
    """Paste 4 tiles on a (2s, 2s) canvas filled with 114.

    ``tiles`` is a list of 4 (image, labels (n,5) cls+normalised xywh, segments [normalised (k,2)]).
    Returns (canvas, labels (n,5) cls+pixel xyxy clipped to [0, 2s], segments in pixels clipped likewise).
    """
    s2 = 2 * s
    xc, yc = centre
    canvas = np.full((s2, s2, 3), PAD_VALUE, dtype=np.uint8)
    all_labels, all_segments = [], []
    for k, (im, labels, segments) in enumerate(tiles):
        h, w = im.shape[:2]
        (x1a, y1a, x2a, y2a), (x1b, y1b, x2b, y2b) = mosaic_placement(k, xc, yc, w, h, s2)
        canvas[y1a:y2a, x1a:x2a] = im[y1b:y2b, x1b:x2b]
        padw, padh = x1a - x1b, y1a - y1b
        lb = labels.copy()
        if len(lb):
            lb[:, 1:] = boxes.xywhn2xyxy(labels[:, 1:], w, h, padw, padh)
        all_labels.append(lb)
        all_segments += [boxes.xyn2xy(seg, w, h, padw, padh) for seg in segments]
    labels = np.concatenate(all_labels, 0)
    labels[:, 1:] = labels[:, 1:].clip(0, s2)
    segments = [seg.clip(0, s2) for seg in all_segments]
    return canvas, labels, segments


def random_perspective(
    im, labels, segments=(), degrees=10.0, translate=0.1, scale=0.1, shear=10.0, perspective=0.0,
    border=(0, 0), rng=None,
):
    """Random affine/perspective warp M = T @ S @ R @ P @ C of ``im`` and its labels (spec 4.4).

    The output is (H + 2*border[0], W + 2*border[1]). Boxes are warped by their 4 corners (or by their
    segment resampled to 1000 points), clipped, and kept only if they pass :func:`box_candidates`.
    Returns (image, labels (m,5) cls+pixel xyxy).
    """
    rng = rng or np.random.default_rng()
    height, width = im.shape[0] + border[0] * 2, im.shape[1] + border[1] * 2
    C = np.eye(3)
    C[0, 2], C[1, 2] = -im.shape[1] / 2, -im.shape[0] / 2  # image centre to the origin
    P = np.eye(3)
    P[2, 0], P[2, 1] = rng.uniform(-perspective, perspective), rng.uniform(-perspective, perspective)
    R = np.eye(3)
    angle, s = rng.uniform(-degrees, degrees), rng.uniform(1 - scale, 1 + scale)
    R[:2] = cv2.getRotationMatrix2D(center=(0, 0), angle=angle, scale=s)
    S = np.eye(3)
    S[0, 1] = math.tan(rng.uniform(-shear, shear) * math.pi / 180)
    S[1, 0] = math.tan(rng.uniform(-shear, shear) * math.pi / 180)
    T = np.eye(3)
    T[0, 2] = rng.uniform(0.5 - translate, 0.5 + translate) * width
    T[1, 2] = rng.uniform(0.5 - translate, 0.5 + translate) * height
    M = T @ S @ R @ P @ C
    if border[0] != 0 or border[1] != 0 or (M != np.eye(3)).any():
        if perspective:
            im = cv2.warpPerspective(im, M, dsize=(width, height), borderValue=FILL)
        else:
            im = cv2.warpAffine(im, M[:2], dsize=(width, height), borderValue=FILL)
    if not len(labels):
        return im, labels
    use_segments = len(segments) == len(labels) and len(segments) > 0
    new = _warp_segments(segments, M, perspective) if use_segments else _warp_boxes(labels[:, 1:5], M, perspective)
    new = boxes.clip_boxes(new, (height, width))
    keep = box_candidates(labels[:, 1:5].T * s, new.T, area_thr=0.01 if use_segments else 0.10)
    labels = labels[keep].copy()
    labels[:, 1:5] = new[keep]
    return im, labels


def _apply(M, xy: np.ndarray, perspective: float) -> np.ndarray:
    xy1 = np.concatenate([xy, np.ones((len(xy), 1))], 1) @ M.T
    return xy1[:, :2] / xy1[:, 2:3] if perspective else xy1[:, :2]


def _warp_boxes(xyxy: np.ndarray, M, perspective: float) -> np.ndarray:
    n = len(xyxy)
    corners = xyxy[:, [0, 1, 2, 3, 0, 3, 2, 1]].reshape(n * 4, 2)  # (x1,y1) (x2,y2) (x1,y2) (x2,y1)
    xy = _apply(M, corners, perspective).reshape(n, 8)
    x, y = xy[:, [0, 2, 4, 6]], xy[:, [1, 3, 5, 7]]
    return np.stack([x.min(1), y.min(1), x.max(1), y.max(1)], 1)


def _warp_segments(segments, M, perspective: float) -> np.ndarray:
    out = []
    for seg in resample_segments(segments):
        xy = _apply(M, seg, perspective)
        out.append([xy[:, 0].min(), xy[:, 1].min(), xy[:, 0].max(), xy[:, 1].max()])
    return np.array(out, dtype=np.float64)


def resample_segments(segments, n: int = 1000) -> list[np.ndarray]:
    """Linearly resample each closed polygon (k, 2) to ``n`` points."""
    out = []
    for seg in segments:
        seg = np.concatenate([seg, seg[:1]], 0)
        t = np.linspace(0, len(seg) - 1, n)
        xp = np.arange(len(seg))
        out.append(np.stack([np.interp(t, xp, seg[:, i]) for i in range(2)], 1))
    return out


def box_candidates(box1, box2, wh_thr=2, ar_thr=100, area_thr=0.1, eps=1e-16):
    """Mask of boxes worth keeping after a warp: box1 (4, n) before (already x scale), box2 (4, n) after.

    Keep when the new width and height exceed ``wh_thr`` px, the new area is > ``area_thr`` of the old
    (scaled) area, and the aspect ratio stays below ``ar_thr``.
    """
    w1, h1 = box1[2] - box1[0], box1[3] - box1[1]
    w2, h2 = box2[2] - box2[0], box2[3] - box2[1]
    ar = np.maximum(w2 / (h2 + eps), h2 / (w2 + eps))
    return (w2 > wh_thr) & (h2 > wh_thr) & (w2 * h2 / (w1 * h1 + eps) > area_thr) & (ar < ar_thr)


def copy_paste(im, labels, segments, p: float = 0.5, rng=None):
    """Paste left-right mirrored copies of round(p * n) segments where their IoA with every box is < 0.30.

    Works only with segment labels (one polygon per box); modifies ``im`` in place and returns
    (im, labels, segments) with the pasted objects appended.
    """
    n = len(segments)
    if not p or not n or n != len(labels):
        return im, labels, segments
    rng = rng or np.random.default_rng()
    w = im.shape[1]
    mask = np.zeros(im.shape[:2], np.uint8)
    labels, segments = labels.copy(), list(segments)
    for j in rng.permutation(n)[: round(p * n)]:
        c, x1, y1, x2, y2 = labels[j]
        box = np.array([w - x2, y1, w - x1, y2])
        if (_ioa(box, labels[:, 1:5]) < 0.30).all():
            labels = np.concatenate([labels, [[c, *box]]], 0)
            seg = segments[j]
            segments.append(np.stack([w - seg[:, 0], seg[:, 1]], 1))
            cv2.drawContours(mask, [segments[j].astype(np.int32)], -1, 255, cv2.FILLED)
    if mask.any():
        flipped = cv2.flip(im, 1)
        src_mask = cv2.flip(mask, 1).astype(bool)
        im[src_mask] = flipped[src_mask]
    return im, labels, segments


def _ioa(box, others) -> np.ndarray:
    """Intersection over the area of ``others`` (n, 4) with one xyxy ``box``."""
    iw = (np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0])).clip(0)
    ih = (np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1])).clip(0)
    area = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1]) + 1e-7
    return iw * ih / area


def mixup(im, labels, im2, labels2, rng=None):
    """MixUp: r ~ Beta(32, 32), image r*a + (1-r)*b (uint8), labels concatenated."""
    rng = rng or np.random.default_rng()
    r = rng.beta(32.0, 32.0)
    im = (im * r + im2 * (1 - r)).astype(np.uint8)
    return im, np.concatenate([labels, labels2], 0)


def augment_hsv(im, hgain=0.5, sgain=0.5, vgain=0.5, rng=None) -> None:
    """Random HSV gains r = U(-1, 1) * gains + 1 applied in place to a BGR image through look-up tables."""
    if not (hgain or sgain or vgain):
        return
    rng = rng or np.random.default_rng()
    r = rng.uniform(-1, 1, 3) * [hgain, sgain, vgain] + 1
    hue, sat, val = cv2.split(cv2.cvtColor(im, cv2.COLOR_BGR2HSV))
    x = np.arange(0, 256, dtype=r.dtype)
    lut_hue = ((x * r[0]) % 180).astype(np.uint8)
    lut_sat = np.clip(x * r[1], 0, 255).astype(np.uint8)
    lut_val = np.clip(x * r[2], 0, 255).astype(np.uint8)
    hsv = cv2.merge((cv2.LUT(hue, lut_hue), cv2.LUT(sat, lut_sat), cv2.LUT(val, lut_val)))
    cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR, dst=im)
