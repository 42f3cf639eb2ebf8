"""AutoAnchor metrics, k-means + evolution, and the head-side update."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from utils import autoanchor

STRIDE = torch.tensor([8.0, 16.0, 32.0])
DEFAULT_PX = torch.tensor([[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119], [116, 90, 156, 198, 373, 326]],
                          dtype=torch.float32).view(3, 3, 2)


def head(anchors_px):
    return SimpleNamespace(anchors=(anchors_px / STRIDE.view(-1, 1, 1)).clone(), stride=STRIDE.clone())


def dataset(wh_px, n_img=20, size=640, seed=0):
    rng = np.random.default_rng(seed)
    shapes = np.full((n_img, 2), size, dtype=np.float64)
    labels = []
    for _ in range(n_img):
        k = len(wh_px)
        lb = np.zeros((k, 5), dtype=np.float32)
        lb[:, 1:3] = rng.uniform(0.3, 0.7, (k, 2))
        lb[:, 3:5] = np.asarray(wh_px) / size * rng.uniform(0.95, 1.05, (k, 1))
        labels.append(lb)
    return shapes, labels


def test_metrics_by_hand():
    wh = torch.tensor([[10.0, 10.0], [40.0, 10.0]])
    anchors = torch.tensor([[10.0, 10.0], [20.0, 20.0]])
    # label 1: ratios 1 and 0.5 -> best 1; label 2: min(w,h) ratios: a1 -> min(1/4, 1) = 0.25, a2 -> min(0.5, 0.5) = 0.5
    assert autoanchor.best_ratio(wh, anchors).tolist() == pytest.approx([1.0, 0.5])
    bpr, aat = autoanchor.anchor_metrics(wh, anchors, thr=0.3)
    assert bpr == 1.0 and aat == pytest.approx((2 + 1) / 2)
    bpr, _ = autoanchor.anchor_metrics(wh, anchors, thr=0.6)
    assert bpr == 0.5
    assert autoanchor.anchor_fitness(wh, anchors, 0.6) == pytest.approx(0.5)


def test_label_wh_scales_to_imgsz():
    shapes = np.array([[640, 480]])
    labels = [np.array([[0, 0.5, 0.5, 0.1, 0.2]])]
    wh = autoanchor.label_wh(shapes, labels, 320, jitter=False)
    assert wh.tolist() == [[pytest.approx(32.0), pytest.approx(0.2 * 240)]]


def test_good_anchors_are_kept():
    det = head(DEFAULT_PX)
    before = det.anchors.clone()
    shapes, labels = dataset([[12, 14], [30, 60], [120, 90], [150, 200]])
    assert autoanchor.check_anchors(det, shapes, labels, thr=4.0, imgsz=640, gen=50) is False
    assert torch.equal(det.anchors, before)


def test_poor_anchors_are_evolved_and_installed_in_grid_units():
    det = head(torch.full((3, 3, 2), 3.0))  # tiny anchors: 100+ px boxes cannot match with anchor_t 4
    shapes, labels = dataset([[100, 120], [200, 150], [300, 320], [60, 80]])
    wh = torch.tensor(autoanchor.label_wh(shapes, labels, 640, jitter=False), dtype=torch.float32)
    bpr_before, _ = autoanchor.anchor_metrics(wh, torch.full((9, 2), 3.0), 0.25)
    assert bpr_before < 0.98
    assert autoanchor.check_anchors(det, shapes, labels, thr=4.0, imgsz=640, gen=100) is True
    px = det.anchors * STRIDE.view(-1, 1, 1)
    bpr_after, _ = autoanchor.anchor_metrics(wh, px.view(-1, 2), 0.25)
    assert bpr_after > 0.98
    area = px.view(-1, 2).prod(1)
    assert torch.all(area[1:] >= area[:-1] - 1e-3)  # small to large, smallest on the stride-8 level


def test_kmeans_falls_back_when_too_few_labels():
    k = autoanchor.kmean_anchors(np.array([[50.0, 60.0], [70.0, 80.0]]), n=9, img_size=640, gen=10)
    assert k.shape == (9, 2) and np.all(k >= 2.0)
