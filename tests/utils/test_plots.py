"""Batch mosaics and labels.jpg: files written, boxes drawn where the targets say, conf filtering."""
from __future__ import annotations

import cv2
import numpy as np
import torch

from utils import plots


def _grey_batch(b=4, h=64, w=96):
    return torch.full((b, 3, h, w), 128, dtype=torch.uint8)


def _changed(mosaic, region):
    x1, y1, x2, y2 = region
    return (np.abs(mosaic[y1:y2, x1:x2].astype(int) - 128).max(-1) > 20).mean()


def test_plot_images_draws_normalised_and_pixel_targets(tmp_path):
    t = torch.tensor([[0, 1, 0.5, 0.5, 0.5, 0.5], [3, 0, 48.0, 32.0, 40.0, 30.0]])
    m = plots.plot_images(_grey_batch(), t, paths=["a.jpg"] * 4, fname=tmp_path / "b.jpg", names={0: "a", 1: "b"})
    assert (tmp_path / "b.jpg").is_file() and m.shape == (128, 192, 3)
    assert cv2.imread(str(tmp_path / "b.jpg")).shape == (128, 192, 3)
    # image 0 (top-left tile): box 24..72 x 16..48; its left edge line is drawn in class 1's colour
    assert np.abs(m[30, 24].astype(int) - plots.colors(1)).max() < 40
    # image 3 (bottom-right tile at (96, 64)): pixel box 28..68 x 17..47
    assert np.abs(m[64 + 35, 96 + 28].astype(int) - plots.colors(0)).max() < 40
    empty = plots.plot_images(_grey_batch(), torch.zeros((0, 6)), paths=["a.jpg"] * 4, fname=tmp_path / "e.jpg")
    assert np.array_equal(m[:64, 96:], empty[:64, 96:])  # image 1 has no targets: its tile is unchanged
    assert not np.array_equal(m[:64, :96], empty[:64, :96])


def test_plot_images_prediction_rows_below_conf_are_skipped(tmp_path):
    low = torch.tensor([[0, 0, 0.5, 0.5, 0.5, 0.5, 0.1]])
    high = torch.tensor([[0, 0, 0.5, 0.5, 0.5, 0.5, 0.9]])
    m_low = plots.plot_images(_grey_batch(1), low, fname=tmp_path / "l.jpg")
    m_high = plots.plot_images(_grey_batch(1), high, fname=tmp_path / "h.jpg")
    empty = plots.plot_images(_grey_batch(1), torch.zeros((0, 7)), fname=tmp_path / "e.jpg")
    assert np.array_equal(m_low, empty) and _changed(m_high, (0, 0, 96, 64)) > _changed(empty, (0, 0, 96, 64))


def test_plot_images_downscales_large_grids(tmp_path):
    imgs = np.random.default_rng(0).random((9, 3, 640, 640)).astype(np.float32)  # float 0-1 input
    t = np.array([[8, 2, 0.5, 0.5, 0.2, 0.2]])
    m = plots.plot_images(imgs, t, fname=tmp_path / "big.jpg", max_size=960, names=["a", "b", "c"])
    assert m.shape == (960, 960, 3)


def test_plot_labels_writes_labels_jpg(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.concatenate([rng.integers(0, 3, (50, 1)), rng.random((50, 4)) * 0.5 + 0.1], 1)
    f = plots.plot_labels(labels, ["RBC", "WBC", "Platelets"], tmp_path / "run")
    im = cv2.imread(str(f))
    assert f.name == "labels.jpg" and im is not None and im.shape[0] == im.shape[1] == 1600


def test_draw_box_and_palette():
    im = np.zeros((200, 200, 3), np.uint8)
    plots.draw_box(im, (50, 100, 150, 180), "cat 0.9", (0, 0, 255), 2)
    assert (im[150, 50] == (0, 0, 255)).all() and im[150, 100].sum() == 0  # edge drawn, inside untouched
    assert (im[90, 52] == (0, 0, 255)).all() or (im[90, 52] == 255).all()  # the label tag sits above the box
    assert len({plots.colors(i) for i in range(20)}) == 20 and plots.colors(3, bgr=True) == plots.colors(3)[::-1]
