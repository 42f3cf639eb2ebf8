"""NMS against a brute-force greedy reference."""
import pytest
import torch

from utils import boxes
from utils.nms import non_max_suppression


def brute_force(pred, conf_thres, iou_thres, multi_label, agnostic, max_det):
    rows = []
    for x in pred:
        box = boxes.xywh2xyxy(x[:4])
        for c in range(pred.shape[1] - 5):
            score = float(x[4] * x[5 + c])
            if multi_label and score > conf_thres and x[4] > conf_thres:
                rows.append([*box.tolist(), score, c])
        if not multi_label:
            score, c = (x[5:] * x[4]).max(0)
            if score > conf_thres and x[4] > conf_thres:
                rows.append([*box.tolist(), float(score), int(c)])
    rows.sort(key=lambda r: -r[4])
    kept = []
    for r in rows:
        same = [k for k in kept if agnostic or k[5] == r[5]]
        ious = [boxes.box_iou(torch.tensor([r[:4]]), torch.tensor([k[:4]])).item() for k in same]
        if all(i <= iou_thres for i in ious):
            kept.append(r)
    return torch.tensor(kept[:max_det]).view(-1, 6)


@pytest.mark.parametrize("multi_label,agnostic", [(False, False), (True, False), (False, True)])
def test_nms_equals_brute_force(multi_label, agnostic):
    g = torch.Generator().manual_seed(0)
    n, nc = 120, 4
    xy = torch.rand(n, 2, generator=g) * 100
    wh = torch.rand(n, 2, generator=g) * 30 + 5
    scores = torch.rand(n, 1 + nc, generator=g)
    pred = torch.cat((xy, wh, scores), 1)
    ours = non_max_suppression(pred[None], 0.2, 0.45, multi_label=multi_label, agnostic=agnostic, max_det=50)[0]
    ref = brute_force(pred, 0.2, 0.45, multi_label, agnostic, 50)
    assert ours.shape == ref.shape
    assert torch.allclose(ours, ref, atol=1e-5)
    assert (ours[1:, 4] <= ours[:-1, 4]).all()


def test_class_filter_max_det_and_empty():
    pred = torch.tensor([[[50, 50, 10, 10, 0.9, 0.9, 0.1], [10, 10, 10, 10, 0.9, 0.1, 0.8]]])
    out = non_max_suppression(pred, 0.25, 0.45, classes=[1])[0]
    assert out[:, 5].tolist() == [1.0]
    assert non_max_suppression(pred, 0.25, 0.45, max_det=1)[0].shape == (1, 6)
    assert non_max_suppression(pred, 0.95, 0.45)[0].shape == (0, 6)
