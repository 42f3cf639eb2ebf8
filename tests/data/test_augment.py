"""Augmentations keep boxes on their pixels; the exact spec rules (HSV LUT, MixUp, load_image, candidates)."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from data import augment
from data.dataset import LoadImagesAndLabels
from tests.data.synth import BACKGROUND, COLOURS, make_yolo_dataset

STRONG = dict(hsv_h=0.0, hsv_s=0.0, hsv_v=0.0, degrees=10.0, translate=0.1, scale=0.5, shear=3.0,
              perspective=0.0, flipud=0.5, fliplr=0.5, mosaic=1.0, mixup=0.0, copy_paste=0.0)


def _assert_boxes_on_pixels(img_rgb_chw, labels, tol=3):
    """Each box must be the bounding box of the blob of its class colour found at its centre (or contain it
    when the box touches the image border)."""
    im = np.ascontiguousarray(img_rgb_chw.numpy().transpose(1, 2, 0)[..., ::-1])  # -> HWC BGR
    h, w = im.shape[:2]
    assert len(labels), "augmentation kept no box at all"
    for _, c, x, y, bw, bh in labels.tolist():
        colour = np.array(COLOURS[int(c)], np.int16)
        mask = (np.abs(im.astype(np.int16) - colour).max(2) < 60).astype(np.uint8)
        cx, cy = min(int(x * w), w - 1), min(int(y * h), h - 1)
        assert mask[cy, cx], f"class {int(c)} box centre ({cx},{cy}) is not on its colour"
        _, comp = cv2.connectedComponents(mask)
        ys, xs = np.nonzero(comp == comp[cy, cx])
        blob = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
        box = np.array([(x - bw / 2) * w, (y - bh / 2) * h, (x + bw / 2) * w, (y + bh / 2) * h])
        if box[0] < 1 or box[1] < 1 or box[2] > w - 1 or box[3] > h - 1:
            # cut by the border: the spec clips the warped corners' box, which can only over-cover
            assert (box[:2] <= blob[:2] + tol).all() and (box[2:] >= blob[2:] - tol).all()
        else:
            np.testing.assert_allclose(box, blob, atol=tol, err_msg=f"class {int(c)} box does not fit its pixels")


@pytest.mark.parametrize("mosaic", [1.0, 0.0])
def test_augmented_boxes_match_pixels(tmp_path, mosaic):
    src = make_yolo_dataset(tmp_path / "ds", n=6, w=160, h=120)
    ds = LoadImagesAndLabels(str(src), img_size=128, augment=True, hyp={**STRONG, "mosaic": mosaic}, seed=3)
    for i in range(12):
        img, labels, _, shapes = ds[i % len(ds)]
        assert img.shape == (3, 128, 128) and (shapes is None) == (mosaic == 1.0)
        _assert_boxes_on_pixels(img, labels)


def test_val_item_is_letterboxed_with_shapes(tmp_path):
    src = make_yolo_dataset(tmp_path / "ds", n=2, w=160, h=120)
    ds = LoadImagesAndLabels(str(src), img_size=64, augment=False)
    img, labels, path, shapes = ds[0]
    assert img.shape == (3, 64, 64) and img.dtype.__str__() == "torch.uint8"
    assert shapes == ((120, 160), ((48 / 120, 64 / 160), (0.0, 8.0)))
    _assert_boxes_on_pixels(img, labels, tol=2)


def test_load_image_rounds_up_and_uses_inter_area_for_val(tmp_path):
    # upstream v7.0 rounds the resized size up (ceil): 67 * 64 / 101 = 42.46 -> 43 rows
    src = make_yolo_dataset(tmp_path / "ds", n=1, w=101, h=67)
    ds = LoadImagesAndLabels(str(src), img_size=64)
    im, (h0, w0), (h, w) = ds.load_image(0)
    assert (h0, w0) == (67, 101) and (h, w) == (math.ceil(67 * 64 / 101), 64) == (43, 64)
    orig = cv2.imread(ds.im_files[0])
    np.testing.assert_array_equal(im, cv2.resize(orig, (64, 43), interpolation=cv2.INTER_AREA))


def test_mosaic_placement_covers_canvas_without_overlap():
    s2, xc, yc, w, h = 200, 70, 130, 90, 80
    cover = np.zeros((s2, s2), int)
    for k in range(4):
        (x1a, y1a, x2a, y2a), (x1b, y1b, x2b, y2b) = augment.mosaic_placement(k, xc, yc, w, h, s2)
        assert (x2a - x1a, y2a - y1a) == (x2b - x1b, y2b - y1b)
        assert 0 <= x1b <= x2b <= w and 0 <= y1b <= y2b <= h
        cover[y1a:y2a, x1a:x2a] += 1
    assert cover.max() == 1 and cover[yc - 1, xc - 1] == cover[yc, xc] == 1


def test_mosaic_labels_in_canvas_pixels():
    im = np.zeros((40, 60, 3), np.uint8)
    lab = np.array([[1, 0.5, 0.5, 0.5, 0.5]], np.float32)
    canvas, labels, _ = augment.build_mosaic([(im, lab, [])] * 4, s=64, centre=(64, 64))
    assert canvas.shape == (128, 128, 3) and canvas[0, 0, 0] == 114
    # top-left tile ends at the centre: its box (15..45, 10..30) shifts by (64-60, 64-40)
    np.testing.assert_allclose(labels[0], [1, 19, 34, 49, 54])


def test_box_candidates_rules():
    # 10x10 -> 10x10 keep; 10x10 -> 10x2 (h <= 2 px) drop; area ratio 0.05 drop; area ratio 0.5 keep
    before = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 100, 100], [0, 0, 10, 10]], float).T
    after = np.array([[0, 0, 10, 10], [0, 0, 10, 2], [0, 0, 10, 50], [0, 0, 10, 5]], float).T
    assert augment.box_candidates(before, after).tolist() == [True, False, False, True]
    thin = np.array([[0, 0, 1000, 3]], float).T
    assert augment.box_candidates(thin, thin, ar_thr=100).tolist() == [False]


def test_hsv_lut_rule():
    im = np.full((4, 4, 3), (40, 120, 200), np.uint8)
    rng = np.random.default_rng(0)
    r = np.random.default_rng(0).uniform(-1, 1, 3) * [0.5, 0.7, 0.4] + 1
    hsv = cv2.cvtColor(im, cv2.COLOR_BGR2HSV)[0, 0].astype(float)
    expect = np.array([int(hsv[0] * r[0]) % 180, min(int(hsv[1] * r[1]), 255), min(int(hsv[2] * r[2]), 255)])
    out = im.copy()
    augment.augment_hsv(out, 0.5, 0.7, 0.4, rng)
    got = cv2.cvtColor(out, cv2.COLOR_BGR2HSV)[0, 0].astype(int)
    assert np.abs(got - expect).max() <= 2  # HSV<->BGR round trip rounding


def test_mixup_is_a_beta_blend_and_concatenates_labels():
    a, b = np.full((8, 8, 3), 200, np.uint8), np.full((8, 8, 3), 100, np.uint8)
    la, lb = np.ones((2, 5)), np.zeros((3, 5))
    r = np.random.default_rng(5).beta(32.0, 32.0)
    im, labels = augment.mixup(a, la, b, lb, np.random.default_rng(5))
    assert im.dtype == np.uint8 and im[0, 0, 0] == int(200 * r + 100 * (1 - r)) and labels.shape == (5, 5)


def test_random_perspective_identity_keeps_everything():
    im = np.random.default_rng(0).integers(0, 255, (32, 48, 3), dtype=np.uint8)
    labels = np.array([[0, 4, 4, 20, 20]], float)
    out, lab = augment.random_perspective(im, labels, degrees=0, translate=0, scale=0, shear=0)
    np.testing.assert_array_equal(out, im)
    np.testing.assert_allclose(lab, labels)


def test_copy_paste_mirrors_segments():
    im = np.full((40, 80, 3), BACKGROUND, np.uint8)
    im[5:15, 5:25] = COLOURS[1]
    seg = np.array([[5, 5], [24, 5], [24, 14], [5, 14]], float)
    labels = np.array([[1, 5, 5, 25, 15]], float)
    out, lab, segs = augment.copy_paste(im, labels, [seg], p=1.0, rng=np.random.default_rng(0))
    assert len(lab) == 2 and len(segs) == 2
    np.testing.assert_allclose(lab[1], [1, 55, 5, 75, 15])
    assert (out[10, 60] == COLOURS[1]).all() and (out[30, 60] == BACKGROUND).all()
