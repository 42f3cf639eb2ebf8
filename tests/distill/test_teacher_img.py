"""--teacher-img (KDConfig.teacher_scale): the teacher sees the batch at N x the student's size and its features
are pooled back to the student's grid; checked against features captured and pooled independently."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from distill import teacher as kd_teacher
from distill.config import KDConfig
from distill.step import DistillStep
from models.yolo import Model
from tests.distill.test_step import IMGSZ, _batch, _build, hyp, teacher_file  # noqa: F401 - fixtures
from train_kd import get_args_parser, teacher_scale
from utils.loss import ComputeLoss

LAYERS = (17, 20, 23)  # the inputs of Detect, DistillStep's default


def _capture(model, imgs):
    """Outputs of LAYERS for one forward, through hooks of this test's own."""
    feats = {}
    hooks = [model.model[i].register_forward_hook(lambda m, a, out, i=i: feats.__setitem__(i, out.detach()))
             for i in LAYERS]
    try:
        with torch.no_grad():
            model(imgs)
    finally:
        for h in hooks:
            h.remove()
    return [feats[i] for i in LAYERS]


@pytest.mark.parametrize("methods", [("pkd",), ("cwd",), ("fgd",)])
def test_teacher_at_twice_the_size_pooled_to_the_student_grid(bccd_teacher_pt, hyp, methods):  # noqa: F811
    """A trained teacher (the shared BCCD yolov5s: an untrained one's features are ~1e-6, the same at any size)."""
    torch.manual_seed(0)
    student = Model("yolov5n.yaml", nc=3).train()
    teacher = kd_teacher.load_teacher(bccd_teacher_pt)
    step = DistillStep(student, teacher, ComputeLoss(student.detect, hyp, nc=3, imgsz=IMGSZ),
                       KDConfig(methods=methods, weight=1.0, teacher_scale=2), IMGSZ)
    imgs, targets = _batch()
    total, terms = step(student, imgs, targets, epoch=0, iteration=0)

    # independently: the teacher on the batch upsampled 2x, each 2x2 block of its features averaged (reshape-mean)
    big = F.interpolate(imgs, size=(2 * imgs.shape[2], 2 * imgs.shape[3]), mode="bilinear", align_corners=False)
    pooled = [f.reshape(f.shape[0], f.shape[1], f.shape[2] // 2, 2, f.shape[3] // 2, 2).mean((3, 5))
              for f in _capture(teacher.module, big)]
    student_feats, preds = _student(student, step, imgs)  # train mode, as in the step: the same batch statistics
    assert [p.shape[2:] for p in pooled] == [f.shape[2:] for f in student_feats]
    expected = step.kd_terms(preds, [], student_feats, pooled, targets)
    kd = {k: v for k, v in terms.items() if k.startswith("distill/")}
    assert set(kd) == set(expected) and len(kd) > 0
    for name in kd:
        assert torch.allclose(kd[name], expected[name].detach(), rtol=1e-5, atol=1e-7), name
    # and not what the teacher gives at the student's own size
    same_size = step.kd_terms(preds, [], student_feats, _capture(teacher.module, imgs), targets)
    assert any(not torch.allclose(kd[n], same_size[n].detach()) for n in kd)


def _student(student, step, imgs):
    with step.student_recorder:
        preds = student(imgs)
    feats = list(step.student_recorder.features)
    step.student_recorder.clear()
    return feats, preds


@pytest.mark.parametrize("methods", [("ogd",), ("cilf",), ("fgd", "ogd")])
def test_output_methods_refuse_a_pooled_teacher(teacher_file, hyp, methods):  # noqa: F811
    with pytest.raises(ValueError, match="do not pool"):
        _build(teacher_file, hyp, methods=methods, teacher_scale=2)


def test_teacher_img_flag_must_be_a_whole_multiple():
    parse = get_args_parser().parse_args
    assert teacher_scale(parse(["--img", "320"])) == 1
    assert teacher_scale(parse(["--img", "320", "--teacher-img", "640"])) == 2
    for bad in ("480", "160"):
        with pytest.raises(ValueError, match="whole multiple of --img 320"):
            teacher_scale(parse(["--img", "320", "--teacher-img", bad]))
    with pytest.raises(ValueError, match="teacher_scale"):
        KDConfig(teacher_scale=0)
    assert KDConfig.from_dict(KDConfig(teacher_scale=2).to_dict()).teacher_scale == 2
