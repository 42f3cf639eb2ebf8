"""AutoAnchor: check how well the anchors fit the dataset's boxes and, if poorly, evolve new ones.

Works on plain arrays/tensors: label wh from ``shapes`` (n, 2) image (w, h) and ``labels`` (list of (k, 5)
``cls x y w h`` normalised), anchors in pixels. The head-side update takes a Detect-like object with an
``anchors`` buffer (nl, na, 2) in grid units and a ``stride`` (nl,) tensor.
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

LOGGER = logging.getLogger(__name__)
PREFIX = "AutoAnchor: "
BPR_OK = 0.98  # keep the current anchors when at least this fraction of labels can be matched


def label_wh(shapes: np.ndarray, labels: list, imgsz: int, rng: np.random.Generator | None = None,
             jitter: bool = True) -> np.ndarray:
    """(n, 2) label sizes in pixels at training size; each image's scale is jittered by U(0.9, 1.1)."""
    shapes = imgsz * np.asarray(shapes, dtype=np.float64) / np.asarray(shapes, dtype=np.float64).max(1, keepdims=True)
    rng = rng or np.random.default_rng(0)
    scale = rng.uniform(0.9, 1.1, size=(shapes.shape[0], 1)) if jitter else np.ones((shapes.shape[0], 1))
    parts = [np.asarray(lb, dtype=np.float64).reshape(-1, 5)[:, 3:5] * s for s, lb in zip(shapes * scale, labels)]
    return np.concatenate(parts, 0) if parts else np.zeros((0, 2))


def best_ratio(wh: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """(n,) best over anchors of the worse of min(w ratio, h ratio) taken both ways; 1 = perfect fit."""
    r = wh[:, None] / anchors[None]
    return torch.min(r, 1 / r).min(2).values.max(1).values


def anchor_metrics(wh: torch.Tensor, anchors: torch.Tensor, thr: float) -> tuple[float, float]:
    """(BPR, anchors above threshold per label) for wh (n, 2) and anchors (k, 2) in pixels; thr = 1/anchor_t."""
    r = wh[:, None] / anchors[None]
    x = torch.min(r, 1 / r).min(2).values  # (n, k)
    best = x.max(1).values
    return (best > thr).float().mean().item(), (x > thr).float().sum(1).mean().item()


def anchor_fitness(wh: torch.Tensor, anchors: torch.Tensor, thr: float) -> float:
    best = best_ratio(wh, anchors)
    return (best * (best > thr).float()).mean().item()


def kmean_anchors(wh0: np.ndarray, n: int = 9, img_size: int = 640, thr: float = 4.0, gen: int = 1000,
                  seed: int = 0) -> np.ndarray:
    """k-means on whitened label wh (scipy, 30 iterations), then genetic refinement; (n, 2) sorted by area."""
    from scipy.cluster.vq import kmeans

    rng = np.random.default_rng(seed)
    thr_inv = 1 / thr
    wh0 = np.asarray(wh0, dtype=np.float64)
    small = (wh0 < 3.0).any(1).sum()
    if small:
        LOGGER.warning(f"{PREFIX}WARNING: extremely small objects found: {small} of {len(wh0)} labels are < 3 pixels")
    wh = wh0[(wh0 >= 2.0).any(1)].astype(np.float32)
    k = None
    try:
        assert n <= len(wh)
        sigma = wh.std(0)
        sigma[sigma == 0] = 1.0
        k, _ = kmeans(wh / sigma, n, iter=30, seed=int(rng.integers(2**31)))
        assert len(k) == n
        k = k * sigma
    except Exception:  # noqa: BLE001 - scipy raises on degenerate data; fall back as upstream does
        LOGGER.warning(f"{PREFIX}WARNING: switching strategies from kmeans to random init")
        k = np.sort(rng.random(n * 2)).reshape(n, 2) * img_size
    wh_t = torch.tensor(wh, dtype=torch.float32)
    k = _evolve(wh_t, k.astype(np.float64), thr_inv, gen, rng)
    return k[np.argsort(k.prod(1))]


def _evolve(wh: torch.Tensor, k: np.ndarray, thr: float, gen: int, rng: np.random.Generator) -> np.ndarray:
    """Mutate the anchors multiplicatively (p 0.9, sigma 0.1, factors in [0.3, 3]); keep improvements."""
    best = anchor_fitness(wh, torch.tensor(k, dtype=torch.float32), thr)
    mp, sigma = 0.9, 0.1
    for _ in range(gen):
        v = np.ones(k.shape)
        while (v == 1).all():  # mutate until something changes
            v = ((rng.random(k.shape) < mp) * rng.random() * rng.standard_normal(k.shape) * sigma + 1).clip(0.3, 3.0)
        kg = (k * v).clip(min=2.0)
        fg = anchor_fitness(wh, torch.tensor(kg, dtype=torch.float32), thr)
        if fg > best:
            best, k = fg, kg
    return k


def check_anchors(detect: Any, shapes: np.ndarray, labels: list, thr: float = 4.0, imgsz: int = 640,
                  gen: int = 1000, seed: int = 0) -> bool:
    """Log BPR / anchors-per-target; evolve and install new anchors when BPR <= 0.98 and they do better.

    Returns True when the head's anchors were replaced.
    """
    stride = detect.stride.detach().float().cpu().view(-1, 1, 1)
    anchors_px = detect.anchors.detach().float().cpu() * stride  # (nl, na, 2)
    wh = torch.tensor(label_wh(shapes, labels, imgsz, np.random.default_rng(seed)), dtype=torch.float32)
    bpr, aat = anchor_metrics(wh, anchors_px.view(-1, 2), 1 / thr)
    msg = f"{PREFIX}{aat:.2f} anchors/target, {bpr:.3f} Best Possible Recall (BPR). "
    if bpr > BPR_OK:
        LOGGER.info(msg + "Current anchors are a good fit to dataset")
        return False
    LOGGER.info(msg + "Anchors are a poor fit to dataset, attempting to improve...")
    na = anchors_px.shape[0] * anchors_px.shape[1]
    new = kmean_anchors(label_wh(shapes, labels, imgsz, jitter=False), n=na, img_size=imgsz, thr=thr, gen=gen, seed=seed)
    new_bpr, _ = anchor_metrics(wh, torch.tensor(new, dtype=torch.float32), 1 / thr)
    if new_bpr <= bpr:
        LOGGER.info(f"{PREFIX}Existing anchors are better than new anchors, keeping the originals")
        return False
    set_anchors(detect, torch.tensor(new, dtype=torch.float32).view_as(anchors_px))
    LOGGER.info(f"{PREFIX}Done: new anchors saved to model (BPR {new_bpr:.3f}); update the model *.yaml to reuse them")
    return True


def set_anchors(detect: Any, anchors_px: torch.Tensor) -> None:
    """Install (nl, na, 2) pixel anchors into the head, small to large in stride order, in grid units."""
    stride = detect.stride.detach().float().cpu()
    a = anchors_px.float().clone()
    area = a.prod(-1).mean(-1)
    if (area[-1] - area[0]).sign() != (stride[-1] - stride[0]).sign():
        a = a.flip(0)
    grid = a / stride.view(-1, 1, 1)
    with torch.no_grad():
        detect.anchors.copy_(grid.to(detect.anchors.device, detect.anchors.dtype))
