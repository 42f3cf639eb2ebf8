"""DistillStep's --kd-decay schedule and --kd-balance calibration, on real tiny-input YOLOv5 models."""
from __future__ import annotations

import math

import torch

from distill import teacher as kd_teacher
from distill.config import KDConfig
from distill.step import DistillStep
from models.yolo import Model
from tests.distill.test_step import IMGSZ, _batch, hyp, teacher_file  # noqa: F401 - fixtures
from utils.loss import ComputeLoss


def _step(teacher_file, hyp, **kwargs):
    torch.manual_seed(0)
    student = Model("yolov5n.yaml", nc=2).train()
    step_args = {k: kwargs.pop(k) for k in ("warmup_iters", "total_iters", "balance_path") if k in kwargs}
    config = KDConfig(**{"methods": ("fgfi", "fgd"), **kwargs})
    loss = ComputeLoss(student.detect, hyp, nc=2, imgsz=IMGSZ)
    return student, DistillStep(student, kd_teacher.load_teacher(teacher_file), loss, config, IMGSZ, **step_args)


def test_cosine_decay_scales_every_kd_term_and_leaves_detection_alone(teacher_file, hyp):
    imgs, targets = _batch()
    student, plain = _step(teacher_file, hyp)
    with torch.no_grad():
        _, reference = plain(student, imgs, targets, epoch=0, iteration=5)
    plain.close()
    student, decayed = _step(teacher_file, hyp, decay="cosine", total_iters=11)  # same seeds: same weights
    with torch.no_grad():
        _, terms = decayed(student, imgs, targets, epoch=0, iteration=5)  # half way: factor 0.5
    for name, value in reference.items():
        expected = value * 0.5 if name.startswith("distill/") else value
        assert torch.allclose(terms[name], expected, rtol=1e-5), name
    assert math.isclose(decayed.config.decay_factor(10, 11), 0.0, abs_tol=1e-12)
