"""ComputeLoss against hand-made targets and an independent, loop-based re-computation."""
from __future__ import annotations

import copy
import math
from types import SimpleNamespace

import pytest
import torch

from utils import loss as loss_mod
from utils.loss import ComputeLoss, LossGains, build_level_targets

HYP = {"box": 0.05, "obj": 1.0, "cls": 0.5, "cls_pw": 1.0, "obj_pw": 1.0, "anchor_t": 4.0, "fl_gamma": 0.0}
ANCHORS_PX = torch.tensor([[[10, 13], [16, 30], [33, 23]],
                           [[30, 61], [62, 45], [59, 119]],
                           [[116, 90], [156, 198], [373, 326]]], dtype=torch.float32)
STRIDES = torch.tensor([8.0, 16.0, 32.0])


def fake_detect(nc=3):
    return SimpleNamespace(anchors=ANCHORS_PX / STRIDES.view(3, 1, 1), nl=3, na=3, nc=nc, no=nc + 5, stride=STRIDES)


def fake_preds(bs=2, imgsz=64, nc=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(bs, 3, imgsz // int(s), imgsz // int(s), nc + 5, generator=g) * 0.5 for s in STRIDES]


# ---------------------------------------------------------------- independent reference (plain Python loops)

def _ciou(b1, b2, eps=1e-7):
    (x1, y1, w1, h1), (x2, y2, w2, h2) = b1, b2
    ax1, ax2, ay1, ay2 = x1 - w1 / 2, x1 + w1 / 2, y1 - h1 / 2, y1 + h1 / 2
    bx1, bx2, by1, by2 = x2 - w2 / 2, x2 + w2 / 2, y2 - h2 / 2, y2 + h2 / 2
    inter = max(0.0, min(ax2, bx2) - max(ax1, bx1)) * max(0.0, min(ay2, by2) - max(ay1, by1))
    iou = inter / (w1 * h1 + w2 * h2 - inter + eps)
    c2 = (max(ax2, bx2) - min(ax1, bx1)) ** 2 + (max(ay2, by2) - min(ay1, by1)) ** 2 + eps
    rho2 = (x2 - x1) ** 2 + (y2 - y1) ** 2
    v = 4 / math.pi**2 * (math.atan(w2 / h2) - math.atan(w1 / h1)) ** 2
    alpha = v / (v - iou + 1 + eps)
    return iou - rho2 / c2 - alpha * v


def _bce(x, t):
    return max(x, 0.0) - x * t + math.log1p(math.exp(-abs(x)))


def _sig(x):
    return 1 / (1 + math.exp(-x))


def reference_positives(targets, anchors, ny, nx, anchor_t=4.0):
    """List of (b, a, gj, gi, tbox, anchor, cls) in upstream order: offset kind, then anchor, then target."""
    pairs = []
    for a in range(anchors.shape[0]):
        for t in targets.tolist():
            w, h = t[4] * nx, t[5] * ny
            aw, ah = anchors[a].tolist()
            if max(w / aw, aw / w, h / ah, ah / h) < anchor_t:
                pairs.append((a, t))
    out = []
    for kind in range(5):
        for a, t in pairs:
            gx, gy = t[2] * nx, t[3] * ny
            ix, iy = nx - gx, ny - gy
            ok = [True, gx % 1 < 0.5 and gx > 1, gy % 1 < 0.5 and gy > 1, ix % 1 < 0.5 and ix > 1, iy % 1 < 0.5 and iy > 1]
            if not ok[kind]:
                continue
            dx, dy = [(0, 0), (0.5, 0), (0, 0.5), (-0.5, 0), (0, -0.5)][kind]
            gi = min(max(int(gx - dx), 0), nx - 1)
            gj = min(max(int(gy - dy), 0), ny - 1)
            out.append((int(t[0]), a, gj, gi, (gx - gi, gy - gj, t[4] * nx, t[5] * ny), anchors[a].tolist(), int(t[1])))
    return out


def reference_loss(preds, targets, detect, hyp, nc, imgsz, eps_ls=0.0):
    gains = {"box": hyp["box"], "obj": hyp["obj"] * (imgsz / 640) ** 2, "cls": hyp["cls"] * nc / 80}
    balance = [4.0, 1.0, 0.4]
    lbox = lobj = lcls = 0.0
    for i, p in enumerate(preds):
        bs, na, ny, nx, no = p.shape
        pos = reference_positives(targets, detect.anchors[i], ny, nx)
        tobj = {}
        cious, cls_terms = [], []
        for b, a, gj, gi, tb, anc, c in pos:
            v = p[b, a, gj, gi].tolist()
            pb = (_sig(v[0]) * 2 - 0.5, _sig(v[1]) * 2 - 0.5, (_sig(v[2]) * 2) ** 2 * anc[0], (_sig(v[3]) * 2) ** 2 * anc[1])
            ci = _ciou(pb, tb)
            cious.append(ci)
            tobj[(b, a, gj, gi)] = max(ci, 0.0)  # later writes win, as on CPU
            if nc > 1:
                tc = [eps_ls * 0.5] * nc
                tc[c] = 1 - 0.5 * eps_ls
                cls_terms.append(sum(_bce(v[5 + k], tc[k]) for k in range(nc)) / nc)
        if cious:
            lbox += sum(1 - c for c in cious) / len(cious)
            if nc > 1:
                lcls += sum(cls_terms) / len(cls_terms)
        flat = p[..., 4].reshape(-1).tolist()
        total = 0.0
        for idx, x in enumerate(flat):
            b, r = divmod(idx, na * ny * nx)
            a, r = divmod(r, ny * nx)
            gj, gi = divmod(r, nx)
            total += _bce(x, tobj.get((b, a, gj, gi), 0.0))
        lobj += total / len(flat) * balance[i]
    return lbox * gains["box"], lobj * gains["obj"], lcls * gains["cls"]


# ---------------------------------------------------------------- assignment

def test_neighbour_cells_hand_computed():
    # 8x8 level (stride 8 at 64 px); centre at grid (3.3, 4.7): left half in x -> left neighbour (2, 4);
    # lower half in y -> down neighbour (3, 5) because 8 - 4.7 = 3.3 has fraction 0.3 < 0.5.
    anchors = torch.tensor([[2.0, 2.0]])
    t = torch.tensor([[0, 1, 3.3 / 8, 4.7 / 8, 2.0 / 8, 2.0 / 8]])
    lt = build_level_targets(t, anchors, 8, 8, 4.0)
    cells = sorted(zip(lt.gi.tolist(), lt.gj.tolist()))
    assert cells == [(2, 4), (3, 4), (3, 5)]
    # box target offsets relative to each cell: own cell (0.3, 0.7), left (1.3, 0.7), down (0.3, -0.3)
    offsets = sorted(tuple(round(v, 4) for v in row) for row in lt.tbox[:, :2].tolist())
    assert offsets == [(0.3, -0.3), (0.3, 0.7), (1.3, 0.7)]
    assert torch.allclose(lt.tbox[:, 2:], torch.tensor([[2.0, 2.0]]).expand(3, 2))
    assert lt.cls.tolist() == [1, 1, 1] and lt.b.tolist() == [0, 0, 0]


def test_border_targets_get_no_outside_neighbour_and_are_clamped():
    anchors = torch.tensor([[1.0, 1.0]])
    # centre (0.8, 0.2) in grid units: x < 1 -> no left neighbour even though frac < 0.5 is false anyway;
    # y=0.2 frac < 0.5 but y <= 1 -> no up neighbour; right: 8-0.8 = 7.2 frac 0.2 -> right neighbour (1, 0).
    t = torch.tensor([[0, 0, 0.8 / 8, 0.2 / 8, 1 / 8, 1 / 8]])
    lt = build_level_targets(t, anchors, 8, 8, 4.0)
    assert sorted(zip(lt.gi.tolist(), lt.gj.tolist())) == [(0, 0), (1, 0)]
    # a centre exactly on the far edge is clamped into the grid
    t = torch.tensor([[0, 0, 1.0, 1.0, 1 / 8, 1 / 8]])
    lt = build_level_targets(t, anchors, 8, 8, 4.0)
    assert lt.gi.max() <= 7 and lt.gj.max() <= 7


def test_ratio_matching_anchor_t():
    anchors = torch.tensor([[1.0, 1.0], [4.0, 4.0], [16.0, 2.0]])
    # a 3.9 x 3.9 box: ratios 3.9 (ok), 1.03 (ok), max(16/3.9, 3.9/2)=4.1 (rejected)
    t = torch.tensor([[0, 0, 0.55, 0.55, 3.9 / 8, 3.9 / 8]])  # centre (4.4, 4.4): left + up neighbours
    lt = build_level_targets(t, anchors, 8, 8, 4.0)
    assert sorted(set(lt.a.tolist())) == [0, 1]
    assert len(lt.a) == 2 * 3  # two anchors x three cells
    # the exact ratio 4.0 is rejected (strict <)
    t = torch.tensor([[0, 0, 0.5, 0.5, 4.0 / 8, 4.0 / 8]])
    lt = build_level_targets(t, torch.tensor([[1.0, 1.0]]), 8, 8, 4.0)
    assert lt.a.numel() == 0


def test_assignment_matches_loop_reference_on_random_targets():
    g = torch.Generator().manual_seed(1)
    n = 25
    xy = torch.rand(n, 2, generator=g)
    wh = torch.rand(n, 2, generator=g) * 0.6 + 0.02
    t = torch.cat((torch.randint(0, 2, (n, 1), generator=g).float(), torch.randint(0, 3, (n, 1), generator=g).float(), xy, wh), 1)
    det = fake_detect()
    for i, ny in enumerate((16, 8, 4)):
        lt = build_level_targets(t, det.anchors[i], ny, ny, 4.0)
        ref = reference_positives(t, det.anchors[i], ny, ny)
        got = list(zip(lt.b.tolist(), lt.a.tolist(), lt.gj.tolist(), lt.gi.tolist(), lt.cls.tolist()))
        assert got == [(r[0], r[1], r[2], r[3], r[6]) for r in ref]
        assert torch.allclose(lt.tbox, torch.tensor([r[4] for r in ref]).view(-1, 4), atol=1e-5)


# ---------------------------------------------------------------- terms and gains

def _targets():
    return torch.tensor([
        [0, 0, 0.30, 0.42, 0.20, 0.30],
        [0, 2, 0.70, 0.70, 0.50, 0.45],
        [1, 1, 0.55, 0.18, 0.08, 0.10],
        [1, 0, 0.12, 0.88, 0.90, 0.80],
    ])


@pytest.mark.parametrize("nc,eps_ls", [(3, 0.0), (3, 0.1), (1, 0.0)])
def test_terms_match_loop_reference(nc, eps_ls):
    det = fake_detect(nc)
    preds = fake_preds(nc=nc, imgsz=128)
    t = _targets().clone()
    if nc == 1:
        t[:, 1] = 0
    cl = ComputeLoss(det, HYP, nc=nc, imgsz=128, label_smoothing=eps_ls)
    terms = cl.components(preds, t)
    rb, ro, rc = reference_loss(preds, t, det, HYP, nc, 128, eps_ls)
    assert terms["task/box"].item() == pytest.approx(rb, rel=1e-5)
    assert terms["task/obj"].item() == pytest.approx(ro, rel=1e-5)
    assert terms["task/cls"].item() == pytest.approx(rc, rel=1e-5, abs=1e-9)
    if nc == 1:
        assert terms["task/cls"].item() == 0.0


def test_call_total_is_sum_times_batch_and_terms_detached():
    det = fake_detect()
    preds = [p.requires_grad_() for p in fake_preds(bs=2)]
    cl = ComputeLoss(det, HYP, nc=3, imgsz=64)
    total, terms = cl(preds, _targets())
    assert set(terms) == {"task/box", "task/obj", "task/cls"}
    assert all(not v.requires_grad for v in terms.values())
    assert total.item() == pytest.approx(sum(v.item() for v in terms.values()) * 2, rel=1e-6)
    total.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in preds)


def test_gains_scaling_and_hyp_not_mutated():
    hyp = dict(HYP)
    before = copy.deepcopy(hyp)
    g = LossGains.from_hyp(hyp, nl=3, nc=20, imgsz=320)
    assert g.box == pytest.approx(0.05) and g.cls == pytest.approx(0.5 * 20 / 80) and g.obj == pytest.approx(0.25)
    g4 = LossGains.from_hyp(hyp, nl=4, nc=80, imgsz=640)
    assert g4.box == pytest.approx(0.05 * 3 / 4) and g4.cls == pytest.approx(0.5 * 3 / 4)
    ComputeLoss(fake_detect(), hyp, nc=3, imgsz=320)(fake_preds(imgsz=64), _targets())
    assert hyp == before


def test_empty_targets_give_zero_box_and_cls_finite_obj():
    cl = ComputeLoss(fake_detect(), HYP, nc=3, imgsz=64)
    terms = cl.components(fake_preds(), torch.zeros(0, 6))
    assert terms["task/box"].item() == 0.0 and terms["task/cls"].item() == 0.0
    assert math.isfinite(terms["task/obj"].item()) and terms["task/obj"].item() > 0


def test_objectness_target_is_clamped_ciou_and_balance():
    # Single positive-free level check: with targets only on P3, P4/P5 obj loss is the all-zero-target BCE.
    det = fake_detect()
    preds = fake_preds(bs=1, imgsz=64)
    cl = ComputeLoss(det, HYP, nc=3, imgsz=640)
    obj_zero = [torch.nn.functional.binary_cross_entropy_with_logits(p[..., 4], torch.zeros_like(p[..., 4])).item()
                for p in preds]
    terms = cl.components(preds, torch.zeros(0, 6))
    assert terms["task/obj"].item() == pytest.approx(4.0 * obj_zero[0] + 1.0 * obj_zero[1] + 0.4 * obj_zero[2], rel=1e-6)


def test_focal_option_changes_loss_and_stays_finite():
    det = fake_detect()
    preds = fake_preds()
    plain = ComputeLoss(det, HYP, nc=3, imgsz=64).components(preds, _targets())
    focal = ComputeLoss(det, {**HYP, "fl_gamma": 1.5}, nc=3, imgsz=64).components(preds, _targets())
    assert isinstance(ComputeLoss(det, {**HYP, "fl_gamma": 1.5}, nc=3).bce_obj, loss_mod.FocalLoss)
    assert focal["task/obj"].item() < plain["task/obj"].item()
    assert focal["task/box"].item() == pytest.approx(plain["task/box"].item())


def test_loss_is_float32_for_bf16_predictions():
    """Under autocast the head may emit bf16 logits; the loss terms are still computed in FP32."""
    from models.yolo import Model

    model = Model("yolov5n.yaml", nc=3)
    loss = ComputeLoss(model.detect, {"box": 0.05, "obj": 1.0, "cls": 0.5, "anchor_t": 4.0}, nc=3, imgsz=64)
    preds = [p.detach().to(torch.bfloat16).requires_grad_() for p in model.train()(torch.rand(2, 3, 64, 64))]
    targets = torch.tensor([[0, 1, 0.5, 0.5, 0.3, 0.4], [1, 2, 0.25, 0.7, 0.2, 0.2]])
    terms = loss.components(preds, targets)
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in terms.values())
    sum(terms.values()).backward()
    assert preds[0].grad is not None and preds[0].grad.dtype == torch.bfloat16
