"""CWD and PKD: the losses against an independent numpy re-computation, gradients, connectors and term names."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from distill.config import KDConfig
from distill.methods import METHODS, Setup
from distill.methods.cwd import CWD
from distill.methods.pkd import PKD
from tests.distill.toy import ToyDetector

STUDENT_CHANNELS, TEACHER_CHANNELS = [4, 8], [6, 16]  # mismatching: connectors on both levels
SHAPES = [(5, 6), (3, 3)]  # (H, W) per level


def _setup(student_channels=STUDENT_CHANNELS, teacher_channels=TEACHER_CHANNELS) -> Setup:
    return Setup(student_channels, teacher_channels, ToyDetector().detect, ToyDetector(width=8).detect)


def _feats(channels, seed, scale=1.0, requires_grad=False):
    generator = torch.Generator().manual_seed(seed)
    return [(scale * torch.randn(3, c, h, w, generator=generator)).requires_grad_(requires_grad)
            for c, (h, w) in zip(channels, SHAPES)]


def _method(cls, student_channels=STUDENT_CHANNELS, teacher_channels=TEACHER_CHANNELS, **options):
    torch.manual_seed(0)
    config = KDConfig(methods=(cls.name,), weight=1.0, **options)
    return cls(config, _setup(student_channels, teacher_channels))


def _terms(method, student, teacher):
    return method.terms(student, teacher, ([], []), torch.zeros(0, 6), shared=None)


def _connect(weight: torch.Tensor, feat: torch.Tensor) -> np.ndarray:
    """A bias-free 1x1 conv written as a channel contraction, in float64."""
    return np.einsum("oc,nchw->nohw", weight.detach().double().numpy()[:, :, 0, 0], feat.detach().double().numpy())


def _batch_standardise(x: np.ndarray, eps: float) -> np.ndarray:
    """BatchNorm without affine: per channel over (N, H, W), biased variance."""
    out = np.empty_like(x)
    for c in range(x.shape[1]):
        values = x[:, c]
        out[:, c] = (values - values.mean()) / np.sqrt(values.var() + eps)
    return out


def _cwd_reference(student: np.ndarray, teacher: np.ndarray, tau: float) -> float:
    n, c = teacher.shape[:2]
    total = 0.0
    for i in range(n):
        for j in range(c):
            s, t = student[i, j].ravel() / tau, teacher[i, j].ravel() / tau
            p_t = np.exp(t - t.max()) / np.exp(t - t.max()).sum()
            log_p_s = s - s.max() - np.log(np.exp(s - s.max()).sum())
            total += float((p_t * (np.log(p_t) - log_p_s)).sum())
    return tau ** 2 * total / (n * c)


def _pkd_reference(student: np.ndarray, teacher: np.ndarray, per_sample: bool) -> float:
    def standardise(x):
        out = np.empty_like(x)
        for c in range(x.shape[1]):
            groups = [(i, c) for i in range(x.shape[0])] if per_sample else [(slice(None), c)]
            for index in groups:
                values = x[index]
                out[index] = (values - values.mean()) / (values.std(ddof=1) + 1e-6)
        return out

    return float(((standardise(student) - standardise(teacher)) ** 2).mean() / 2)


@pytest.mark.parametrize("tau", [4.0, 1.0])
def test_cwd_matches_a_loop_over_samples_and_channels(tau):
    method = _method(CWD, cwd_tau=tau)
    student, teacher = _feats(STUDENT_CHANNELS, 1), _feats(TEACHER_CHANNELS, 2, scale=3.0)
    terms = _terms(method, student, teacher)
    assert list(terms) == ["distill/cwd_p2", "distill/cwd_p3"]  # the toy head's strides 4 and 8
    for name, connector, s, t in zip(terms, method.modules, student, teacher):
        expected = _cwd_reference(_connect(connector.weight, s), t.double().numpy(), tau)
        assert terms[name].item() == pytest.approx(expected, rel=1e-5)
    same = _method(CWD, [6, 16], TEACHER_CHANNELS, cwd_tau=tau)
    with torch.no_grad():  # identity connectors: CWD(T, T) = 0
        for connector in same.modules:
            connector.weight.copy_(torch.eye(connector.weight.shape[0])[:, :, None, None])
    assert all(abs(v.item()) < 1e-6 for v in _terms(same, teacher, teacher).values())


def test_cwd_bn_variant_standardises_teacher_and_connector_output():
    method = _method(CWD, cwd_tau=1.0, cwd_norm="bn")
    student, teacher = _feats(STUDENT_CHANNELS, 3), _feats(TEACHER_CHANNELS, 4, scale=5.0)
    terms = _terms(method, student, teacher)
    for name, connector, s, t in zip(terms, method.modules, student, teacher):
        assert not list(connector[1].parameters()) and not list(connector[1].buffers())  # affine-free, stateless
        expected = _cwd_reference(_batch_standardise(_connect(connector[0].weight, s), 1e-5),
                                  _batch_standardise(t.double().numpy(), 1e-5), 1.0)
        assert terms[name].item() == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize("norm", ["batch", "sample"])
def test_pkd_matches_a_loop_over_channels(norm):
    method = _method(PKD, pkd_norm=norm)
    student, teacher = _feats(STUDENT_CHANNELS, 5), _feats(TEACHER_CHANNELS, 6, scale=2.0)
    terms = _terms(method, student, teacher)
    assert list(terms) == ["distill/pkd_p2", "distill/pkd_p3"]
    for name, connector, s, t in zip(terms, method.modules, student, teacher):
        expected = _pkd_reference(_connect(connector.weight, s), t.double().numpy(), norm == "sample")
        assert terms[name].item() == pytest.approx(expected, rel=1e-5)
    # matching channels: no connector, and an affine copy of the teacher is imitated perfectly
    same = _method(PKD, TEACHER_CHANNELS, TEACHER_CHANNELS, pkd_norm=norm)
    assert same.modules is None
    assert all(v.item() < 1e-6 for v in _terms(same, [3 * t + 1 for t in teacher], teacher).values())


@pytest.mark.parametrize("cls", [CWD, PKD])
def test_gradients_reach_student_and_connector_never_the_teacher(cls):
    method = _method(cls)
    student = _feats(STUDENT_CHANNELS, 7, requires_grad=True)
    teacher = _feats(TEACHER_CHANNELS, 8, requires_grad=True)
    sum(_terms(method, student, teacher).values()).backward()
    assert all(s.grad is not None and s.grad.abs().sum() > 0 for s in student)
    assert all(t.grad is None for t in teacher)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in method.modules.parameters())
    shapes = [tuple(p.shape) for p in method.modules.parameters()]
    assert shapes == [(6, 4, 1, 1), (16, 8, 1, 1)]  # 1x1 student -> teacher channels, no bias


def test_pkd_connects_only_mismatching_levels():
    method = _method(PKD, [6, 8], TEACHER_CHANNELS)
    assert isinstance(method.modules[0], torch.nn.Identity)
    assert [tuple(p.shape) for p in method.modules.parameters()] == [(16, 8, 1, 1)]
    assert _method(CWD, TEACHER_CHANNELS, TEACHER_CHANNELS).modules is not None  # CWD always has its connector


def test_term_names_follow_strides_or_layer_indices():
    assert CWD.term_names == ("distill/cwd_p3", "distill/cwd_p4", "distill/cwd_p5")
    assert PKD.term_names == ("distill/pkd_p3", "distill/pkd_p4", "distill/pkd_p5")
    config = KDConfig(methods=("cwd", "pkd"), layers=(1, 2))
    assert CWD(config, _setup()).term_names == ("distill/cwd_l1", "distill/cwd_l2")
    assert PKD(config, _setup()).term_names == ("distill/pkd_l1", "distill/pkd_l2")


def test_registered_after_fgd_with_validated_options():
    names = list(METHODS)
    assert names.index("fgd") == 2 and names[3:5] == ["cwd", "pkd"]  # after the older methods: their runs unchanged
    for bad in (dict(cwd_tau=0.0), dict(cwd_norm="gn"), dict(pkd_norm="global")):
        with pytest.raises(ValueError):
            KDConfig(**bad)
    with pytest.raises(ValueError, match="shapes"):
        _terms(_method(PKD, TEACHER_CHANNELS, TEACHER_CHANNELS), _feats(TEACHER_CHANNELS, 0)[::-1][:1],
               _feats(TEACHER_CHANNELS, 0)[:1])
