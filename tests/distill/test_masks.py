"""FGFI and FGD masks against hand-made boxes and slow loop references written here from the spec."""
from __future__ import annotations

import math

import pytest
import torch

from distill import masks
from tests.distill.toy import toy_targets


def _reference_fgfi(targets, anchors, shape, batch_size, psi):
    """Spec section 3, literally: loops over images, GTs, rows, columns and anchors."""
    height, width = shape
    out = torch.zeros(batch_size, 1, height, width)
    for row in targets.tolist():
        b, _, x, y, w, h = row
        gx1, gy1, gx2, gy2 = (x - w / 2) * width, (y - h / 2) * height, (x + w / 2) * width, (y + h / 2) * height
        ious = {}
        for i in range(height):
            for j in range(width):
                for aw, ah in anchors.tolist():
                    ax1, ay1, ax2, ay2 = j + 0.5 - aw / 2, i + 0.5 - ah / 2, j + 0.5 + aw / 2, i + 0.5 + ah / 2
                    inter = max(0.0, min(ax2, gx2) - max(ax1, gx1)) * max(0.0, min(ay2, gy2) - max(ay1, gy1))
                    union = aw * ah + (gx2 - gx1) * (gy2 - gy1) - inter
                    ious.setdefault((i, j), []).append(inter / union if union > 0 else 0.0)
        best = max(max(v) for v in ious.values())
        for (i, j), values in ious.items():
            if any(v > psi * best for v in values):
                out[int(b), 0, i, j] = 1
    return out


def test_fgfi_orientation_gt_at_x08_y02_lights_row3_col12():
    targets = torch.tensor([[0, 0, 0.8, 0.2, 1 / 16, 1 / 16]])
    mask = masks.fgfi_mask(targets, torch.tensor([[1.0, 1.0]]), (16, 16), 1, psi=0.5)[0, 0]
    rows, cols = mask.nonzero(as_tuple=True)
    assert mask[3, 12] == 1 and mask[12, 3] == 0
    assert abs(rows.float().mean() - 3) <= 1 and abs(cols.float().mean() - 12) <= 1


def test_fgfi_matches_loop_reference_with_empty_image():
    torch.manual_seed(0)
    targets = toy_targets()
    anchors = torch.tensor([[1.0, 1.5], [3.0, 2.0], [0.5, 0.5]])
    for psi in (0.3, 0.5, 0.8):
        got = masks.fgfi_mask(targets, anchors, (8, 10), 3, psi=psi)
        assert got.shape == (3, 1, 8, 10)
        assert torch.equal(got, _reference_fgfi(targets, anchors, (8, 10), 3, psi))
    assert got[1].sum() == 0  # image 1 has no GT


def test_fgfi_psi_threshold_is_monotone_and_strict():
    targets = toy_targets()[:1]
    anchors = torch.tensor([[2.0, 2.0]])
    loose = masks.fgfi_mask(targets, anchors, (16, 16), 1, psi=0.2)
    tight = masks.fgfi_mask(targets, anchors, (16, 16), 1, psi=0.9)
    assert tight.sum() < loose.sum() and torch.all(loose >= tight)
    # psi = 1 with a strict '>' lights nothing: no IoU exceeds the maximum IoU
    assert masks.fgfi_mask(targets, anchors, (16, 16), 1, psi=1.0).sum() == 0


def test_fgfi_mask_is_union_over_gts():
    targets = toy_targets()[:2]
    anchors = torch.tensor([[1.0, 1.0], [2.0, 3.0]])
    both = masks.fgfi_mask(targets, anchors, (12, 12), 1)
    first = masks.fgfi_mask(targets[:1], anchors, (12, 12), 1)
    second = masks.fgfi_mask(targets[1:], anchors, (12, 12), 1)
    assert torch.equal(both, torch.maximum(first, second))
    assert first.sum() > 0 and second.sum() > 0


def test_fgfi_empty_targets_give_zero_masks():
    out = masks.fgfi_masks(torch.zeros(0, 6), torch.ones(2, 2, 2), [(8, 8), (4, 4)], 2)
    assert [m.shape for m in out] == [(2, 1, 8, 8), (2, 1, 4, 4)] and all(m.sum() == 0 for m in out)


def test_fgfi_matched_assignment_drops_gts_the_level_would_not_match():
    anchors = torch.tensor([[[1.0, 1.0]], [[4.0, 4.0]]])  # (nl=2, na=1, 2) grid units
    big = torch.tensor([[0, 0, 0.5, 0.5, 0.9, 0.9]])  # 14.4 cells wide on 16x16: ratio 14 > 4 on level 0
    all_levels = masks.fgfi_masks(big, anchors, [(16, 16), (8, 8)], 1, assign="all")
    matched = masks.fgfi_masks(big, anchors, [(16, 16), (8, 8)], 1, assign="matched")
    assert all_levels[0].sum() > 0 and matched[0].sum() == 0
    assert torch.equal(all_levels[1], matched[1])  # 7.2 / 4 = 1.8 < 4: matched on level 1


def _reference_fgd(targets, shape, batch_size):
    height, width = shape
    fg = torch.zeros(batch_size, height, width)
    for b, _, x, y, w, h in targets.tolist():
        wmin, wmax = math.floor((x - w / 2) * width), math.ceil((x + w / 2) * width)
        hmin, hmax = math.floor((y - h / 2) * height), math.ceil((y + h / 2) * height)
        area = 1.0 / (hmax - hmin + 1) / (wmax - wmin + 1)
        for i in range(max(hmin, 0), min(hmax, height - 1) + 1):
            for j in range(max(wmin, 0), min(wmax, width - 1) + 1):
                fg[int(b), i, j] = max(fg[int(b), i, j].item(), area)
    bg = torch.zeros_like(fg)
    for b in range(batch_size):
        zeros = (fg[b] == 0).sum().item()
        if zeros:
            bg[b][fg[b] == 0] = 1.0 / zeros
    return fg, bg


def test_fgd_masks_match_loop_reference():
    targets = torch.cat([toy_targets(), torch.tensor([[2, 0, 0.9, 0.9, 0.2, 0.2]])])  # touches the corner
    # (11, 13) keeps box edges off exact integers, where float32 and float64 floor/ceil could differ
    fg, bg = masks.fgd_masks(targets, (11, 13), 3)
    ref_fg, ref_bg = _reference_fgd(targets, (11, 13), 3)
    assert torch.allclose(fg, ref_fg) and torch.allclose(bg, ref_bg)


def test_fgd_single_box_value_is_one_over_unclipped_area():
    targets = torch.tensor([[0, 0, 0.2, 0.25, 0.2, 0.3]])  # xyxy_l on 16x16: (1.6, 1.6, 4.8, 6.4)
    fg, _ = masks.fgd_masks(targets, (16, 16), 1)
    assert torch.allclose(fg[0, 1:8, 1:6], torch.full((7, 5), 1 / 35))  # rows 1..7, cols 1..5
    assert (fg[0] > 0).sum() == 35
    edge = torch.tensor([[0, 0, 0.875, 0.5, 0.25, 0.25]])  # x2 = 1.0 -> wmax = W: one phantom column
    fg, _ = masks.fgd_masks(edge, (8, 8), 1)
    assert torch.allclose(fg[0, 3, 6], torch.tensor(1 / 3 / 3)) and (fg[0] > 0).sum() == 3 * 2


def test_fgd_smaller_box_wins_on_overlap():
    targets = torch.tensor([[0, 0, 0.5, 0.5, 0.8, 0.8], [0, 1, 0.5, 0.5, 0.1, 0.1]])
    fg, _ = masks.fgd_masks(targets, (20, 20), 1)
    big_value = fg[0, 3, 3]
    assert fg[0, 10, 10] > big_value and torch.isclose(fg[0, 10, 10], torch.tensor(1 / 9))


def test_fgd_background_normalised_and_empty_image_uniform():
    fg, bg = masks.fgd_masks(toy_targets(), (8, 8), 3)
    assert torch.allclose(bg.sum((1, 2)), torch.ones(3))
    assert torch.all(bg[fg > 0] == 0)
    assert torch.all(fg[1] == 0) and torch.allclose(bg[1], torch.full((8, 8), 1 / 64))
    full = torch.tensor([[0, 0, 0.5, 0.5, 1.0, 1.0]])
    fg, bg = masks.fgd_masks(full, (4, 4), 1)
    assert torch.all(fg > 0) and torch.all(bg == 0) and not torch.isnan(bg).any()


def test_level_anchors_picks_the_head_level_by_stride_and_rejects_unknown_strides():
    from tests.distill.toy import ToyDetector

    detect = ToyDetector().detect  # strides 4, 8
    anchors = masks.level_anchors(detect, [8.0, 4.0])
    assert torch.equal(anchors[0], detect.anchors[1]) and torch.equal(anchors[1], detect.anchors[0])
    with pytest.raises(ValueError, match="stride 16"):
        masks.level_anchors(detect, [16.0])
