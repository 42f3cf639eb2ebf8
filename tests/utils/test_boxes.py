"""Box conversions, letterbox and scale_boxes round trips, CIoU against a hand computation."""
import math

import numpy as np
import pytest
import torch

from utils import boxes
from utils.letterbox import letterbox


def test_conversions_round_trip_for_tensors_and_arrays():
    xyxy = torch.tensor([[10.0, 20.0, 50.0, 80.0], [0.0, 0.0, 1.0, 1.0]])
    assert torch.allclose(boxes.xywh2xyxy(boxes.xyxy2xywh(xyxy)), xyxy)
    assert boxes.xyxy2xywh(xyxy)[0].tolist() == [30.0, 50.0, 40.0, 60.0]
    arr = xyxy.numpy().copy()
    np.testing.assert_allclose(boxes.xyxy2xywhn(boxes.xywhn2xyxy(boxes.xyxy2xywhn(arr, 100, 200), 100, 200), 100, 200),
                               boxes.xyxy2xywhn(arr, 100, 200))
    assert np.array_equal(arr, xyxy.numpy())  # inputs are never modified


def test_xyxy2xywhn_clips_to_image():
    out = boxes.xyxy2xywhn(torch.tensor([[-10.0, 0.0, 110.0, 50.0]]), w=100, h=100, clip=True)
    assert out.tolist() == [[0.5, 0.25, 1.0, 0.5]]


@pytest.mark.parametrize("hw,expected", [((1080, 810), (640, 480)), ((720, 1280), (384, 640))])
def test_letterbox_auto_minimum_rectangle_matches_upstream_examples(hw, expected):
    im = np.zeros((*hw, 3), np.uint8)
    out, ratio, pad = letterbox(im, 640, auto=True, stride=32)
    assert out.shape[:2] == expected
    assert ratio[0] == pytest.approx(min(640 / hw[0], 640 / hw[1]))


def test_letterbox_pads_with_114_and_splits_padding():
    im = np.full((100, 200, 3), 7, np.uint8)
    out, ratio, (dw, dh) = letterbox(im, 256, auto=False)
    assert out.shape == (256, 256, 3) and ratio == (1.28, 1.28) and dw == 0 and dh == 64.0
    assert (out[:64] == 114).all() and (out[-64:] == 114).all() and (out[64:-64] == 7).all()
    out, ratio, _ = letterbox(im, 400, auto=False, scaleup=False)
    assert ratio == (1.0, 1.0) and (out[150:250, 100:300] == 7).all()


def test_scale_boxes_inverts_letterbox():
    h0, w0 = 375, 500
    original = torch.tensor([[50.0, 40.0, 300.0, 200.0], [0.0, 0.0, 500.0, 375.0]])
    _, (r, _), (dw, dh) = letterbox(np.zeros((h0, w0, 3), np.uint8), 320, auto=False)
    boxed = original * r + torch.tensor([dw, dh, dw, dh])
    back = boxes.scale_boxes((320, 320), boxed, (h0, w0))
    assert torch.allclose(back, original, atol=1e-4)
    back = boxes.scale_boxes((320, 320), boxed, (h0, w0), ratio_pad=((r, r), (dw, dh)))
    assert torch.allclose(back, original, atol=1e-4)


def test_box_iou_and_ciou_by_hand():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0]])
    assert boxes.box_iou(a, b).item() == pytest.approx(1 / 7)
    # CIoU for xywh boxes (1,1,2,2) and (2,2,2,2): IoU 1/7, centre distance^2 2, enclosing diagonal^2 18, v = 0
    ciou = boxes.bbox_iou(torch.tensor([1.0, 1.0, 2.0, 2.0]), torch.tensor([2.0, 2.0, 2.0, 2.0]), ciou=True)
    assert ciou.item() == pytest.approx(1 / 7 - 2 / 18, abs=1e-6)
    # aspect-ratio term: (1,1,2,2) vs (1,1,2,4): IoU 0.5, rho 0, v = 4/pi^2 (atan(0.5) - atan(1))^2
    v = 4 / math.pi**2 * (math.atan(0.5) - math.atan(1)) ** 2
    alpha = v / (v - 0.5 + 1)
    c2 = 2**2 + 4**2
    ciou = boxes.bbox_iou(torch.tensor([1.0, 1.0, 2.0, 2.0]), torch.tensor([1.0, 1.0, 2.0, 4.0]), ciou=True)
    assert ciou.item() == pytest.approx(0.5 - 0 / c2 - alpha * v, abs=1e-6)
