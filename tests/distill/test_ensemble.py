"""--teacher-ensemble (distill/ensemble.py): the members' head outputs averaged in probability space, checked
against each member run on its own; one head layout required; output methods only; one train_kd.py epoch."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

import train_kd
from distill import teacher as kd_teacher
from distill.config import KDConfig
from distill.ensemble import TeacherEnsemble, average_logits, load_teachers
from distill.step import DistillStep
from models.yolo import Model
from tests.distill.test_step import IMGSZ, _batch, hyp  # noqa: F401 - fixtures
from utils.loss import ComputeLoss


@pytest.fixture(scope="module")
def members(untrained_checkpoint):
    """Two yolov5n teachers of one head layout (nc 2), different weights; a third with another nc."""
    return (untrained_checkpoint("yolov5n.yaml", nc=2, seed=1), untrained_checkpoint("yolov5n.yaml", nc=2, seed=2),
            untrained_checkpoint("yolov5n.yaml", nc=3, seed=3))


def test_outputs_are_the_members_mean_probability(members):
    a, b = (kd_teacher.load_teacher(p) for p in members[:2])
    ensemble = load_teachers([str(p) for p in members[:2]])
    assert isinstance(ensemble, TeacherEnsemble) and len(ensemble.paths) == 2
    assert ensemble.sha256 == f"{a.sha256} + {b.sha256}"
    imgs, _ = _batch()
    with torch.no_grad():
        (za, raw_a), (zb, raw_b) = a(imgs), b(imgs)
        z, raw = ensemble(imgs)
    for level, (ra, rb, r) in enumerate(zip(raw_a, raw_b, raw)):
        expected = ((ra.double().sigmoid() + rb.double().sigmoid()) / 2).logit()  # float64, by hand
        assert torch.allclose(r.double(), expected, atol=1e-4), level
        assert not torch.allclose(r, ra)  # the members differ, so the mean is neither of them
    assert torch.allclose(z, (za + zb) / 2, atol=1e-5)
    assert torch.allclose(average_logits([raw_a[0]]), raw_a[0], atol=1e-4)  # one member: itself
    assert not ensemble.training and not any(p.requires_grad for p in ensemble.parameters())


def test_members_need_one_head_and_feature_methods_refuse_it(members, hyp):  # noqa: F811
    with pytest.raises(ValueError, match="one head layout.*nc 2 vs 3"):
        load_teachers([str(members[0]), str(members[2])])
    ensemble = load_teachers([str(p) for p in members[:2]])
    student = Model("yolov5n.yaml", nc=2).train()
    loss = ComputeLoss(student.detect, hyp, nc=2, imgsz=IMGSZ)
    for methods, options in ((("cwd",), {}), (("ogd", "fgd"), {}), (("cilf",), {"cilf_alpha": 0.5})):
        with pytest.raises(ValueError, match="has no features"):
            DistillStep(student, ensemble, loss, KDConfig(methods=methods, **options), IMGSZ)
    step = DistillStep(student, ensemble, loss, KDConfig(methods=("ogd", "cilf"), weight=1.0), IMGSZ)
    imgs, targets = _batch()
    _, terms = step(student, imgs, targets, epoch=0, iteration=0)
    assert all(torch.isfinite(v) for v in terms.values()) and terms["distill/ogd_obj"] > 0


def test_bccd_one_epoch_ogd_from_an_ensemble(tmp_path, bccd_subset_yaml, bccd_teacher_pt):
    """The shared BCCD teacher twice (a valid, if trivial, ensemble): the run records both members."""
    argv = ["--data", str(bccd_subset_yaml), "--cfg", "yolov5n.yaml", "--weights", "", "--imgsz", "64", "--epochs", "1",
            "--batch-size", "16", "--device", "cpu", "--workers", "0", "--noautoanchor", "--noplots", "--teacher",
            str(bccd_teacher_pt), "--teacher-ensemble", str(bccd_teacher_pt), "--kd", "ogd", "--project",
            str(tmp_path), "--name", "ens"]
    run_dir = Path(train_kd.main(train_kd.parse_opt(argv)).save_dir)
    record = yaml.safe_load((run_dir / "kd.yaml").read_text())
    sha = kd_teacher.file_sha256(bccd_teacher_pt)
    assert record["teacher_sha256"] == f"{sha} + {sha}" and record["teacher"].count(" + ") == 1
    assert (run_dir / "weights" / "last.pt").is_file()
