"""OGD (objectness-gated output distillation, spec section 12): the terms against an independent float64 loop,
the gradient at equality, the teacher kept out of the graph, and the head checks."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from distill.config import KDConfig
from distill.methods import OGD, Setup
from distill.methods.ogd import ogd_losses
from tests.distill.toy import ToyDetector

NC = 3


def _outputs(seed: int, scale: float = 2.0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [scale * torch.randn(2, 3, h, w, 5 + NC, generator=generator) for h, w in ((4, 5), (2, 3))]


def _reference(student_outputs, teacher_outputs, wh: str) -> dict[str, float]:
    """Element by element in float64: BCE with the teacher's sigmoid as soft target, minus the target's entropy."""
    sig = lambda z: 1.0 / (1.0 + math.exp(-z))  # noqa: E731

    def kl(z_s: float, z_t: float) -> float:
        q, p = sig(z_s), sig(z_t)
        bce = -(p * math.log(q) + (1 - p) * math.log(1 - q))
        entropy = -(p * math.log(p) + (1 - p) * math.log(1 - p))
        return bce - entropy

    box = cls = obj = gates = cells = 0.0
    for student, teacher in zip(student_outputs, teacher_outputs):
        s_all, t_all = student.detach().double().numpy(), teacher.double().numpy()
        for index in np.ndindex(*s_all.shape[:4]):
            s, t = s_all[index], t_all[index]
            gate = sig(t[4])
            coords = [kl(s[k], t[k]) for k in range(2)]
            coords += [kl(s[k], t[k]) if wh == "kl" else abs(s[k] - t[k]) for k in (2, 3)]
            box += gate * sum(coords)
            cls += gate * sum(kl(s[5 + c], t[5 + c]) for c in range(NC)) / NC
            obj += kl(s[4], t[4])
            gates += gate
            cells += 1
    return {"box": box / gates, "cls": cls / gates, "obj": obj / cells}


@pytest.mark.parametrize("wh", ["kl", "l1"])
def test_terms_match_an_independent_elementwise_computation(wh):
    student, teacher = _outputs(0), _outputs(1)
    got = ogd_losses(student, teacher, wh)
    expected = _reference(student, teacher, wh)
    for key in ("box", "cls", "obj"):
        assert got[key].dtype == torch.float32
        assert float(got[key]) == pytest.approx(expected[key], rel=1e-5), key


def test_zero_loss_and_zero_gradient_when_the_student_equals_the_teacher():
    teacher = _outputs(2, scale=4.0)
    for wh in ("kl", "l1"):
        student = [t.clone().requires_grad_(True) for t in teacher]
        values = ogd_losses(student, teacher, wh)
        sum(values.values()).backward()
        assert all(abs(float(v.detach())) < 1e-6 for v in values.values())  # KL: BCE minus the teacher's entropy
        # L1's subgradient at 0 is 0 in torch; the KL terms' gradient is sigmoid(z_s) - sigmoid(z_t) = 0
        assert all(s.grad.abs().max() < 1e-7 for s in student)
    # and off equality the gradient is the soft-target BCE's: d/dz_s obj-term = (sigmoid(z_s) - sigmoid(z_t)) / cells
    student = [s.requires_grad_(True) for s in _outputs(3)]
    ogd_losses(student, teacher)["obj"].backward()
    cells = sum(t[..., 4].numel() for t in teacher)
    expected = (torch.sigmoid(student[0][..., 4]) - torch.sigmoid(teacher[0][..., 4])) / cells
    assert torch.allclose(student[0].grad[..., 4], expected.detach(), atol=1e-8)


def test_gradient_reaches_the_student_only_and_terms_stay_fp32_under_autocast():
    student = [s.requires_grad_(True) for s in _outputs(4)]
    teacher = [t.requires_grad_(True) for t in _outputs(5)]  # would collect gradients if it entered the graph
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        values = ogd_losses([s.bfloat16() for s in student], [t.bfloat16() for t in teacher])
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in values.values())
    sum(values.values()).backward()
    assert all(t.grad is None for t in teacher)
    assert all(s.grad is not None and s.grad.abs().sum() > 0 for s in student)
    # the gate is the teacher's objectness: a student obj logit enters only the unweighted obj term
    student = [s.detach().requires_grad_(True) for s in _outputs(4)]
    ogd_losses(student, _outputs(5))["box"].backward()
    assert student[0].grad[..., 4].abs().max() == 0 and student[0].grad[..., :4].abs().sum() > 0


def _setup(student: ToyDetector, teacher: ToyDetector, student_names=None, teacher_names=None) -> Setup:
    return Setup([4, 8], [4, 8], student.detect, teacher.detect, student_names, teacher_names)


def test_method_terms_are_weighted_and_named():
    config = KDConfig(methods=("ogd",), weight=0.5)
    method = OGD(config, _setup(ToyDetector(nc=NC), ToyDetector(nc=NC)))
    student, teacher = _outputs(6), _outputs(7)
    terms = method.terms([], [], (student, teacher), torch.zeros(0, 6), None)
    assert tuple(terms) == OGD.term_names == ("distill/ogd_box", "distill/ogd_cls", "distill/ogd_obj")
    raw = ogd_losses(student, teacher)
    assert all(torch.equal(terms[f"distill/ogd_{k}"], 0.5 * raw[k]) for k in raw)


def test_mismatching_heads_raise_naming_what_differs():
    config = KDConfig(methods=("ogd",))
    with pytest.raises(ValueError, match=r"nc 2 vs 3"):
        OGD(config, _setup(ToyDetector(nc=2), ToyDetector(nc=3)))
    other = torch.tensor([[[1.0, 1.5], [2.0, 2.0]], [[1.0, 1.0], [3.0, 2.0]]])
    with pytest.raises(ValueError, match=r"anchor shapes differ \(level 1"):
        OGD(config, _setup(ToyDetector(nc=2), ToyDetector(nc=2, anchors=other)))
    with pytest.raises(ValueError, match=r"class names \['a', 'b'\] vs \['b', 'a'\]"):
        OGD(config, _setup(ToyDetector(nc=2), ToyDetector(nc=2), {0: "a", 1: "b"}, {0: "b", 1: "a"}))
    other_stride = ToyDetector(nc=2)
    other_stride.detect.stride.mul_(2)
    with pytest.raises(ValueError, match=r"head strides \[4.0, 8.0\] vs \[8.0, 16.0\]"):
        OGD(config, _setup(ToyDetector(nc=2), other_stride))
    OGD(config, _setup(ToyDetector(nc=2), ToyDetector(nc=2), {0: "a", 1: "b"}, {0: "a", 1: "b"}))
    with pytest.raises(ValueError, match="ogd_wh"):
        KDConfig(methods=("ogd",), ogd_wh="l2")
