"""DistillStep and teacher handling on real (tiny-input) YOLOv5 models: spec section 10 pitfalls 1-4, 6."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import yaml

from distill import teacher as kd_teacher
from distill.config import KDConfig
from distill.step import DistillStep
from models import weights
from models.yolo import Model
from utils import checkpoint
from utils.loss import ComputeLoss

ROOT = Path(__file__).resolve().parents[2]
IMGSZ = 64
ALL_METHODS = ("fgfi", "cilf", "fgd")


@pytest.fixture(scope="module")
def hyp():
    return yaml.safe_load((ROOT / "data" / "hyps" / "hyp.scratch-low.yaml").read_text())


@pytest.fixture(scope="module")
def teacher_file(untrained_checkpoint):
    return untrained_checkpoint("yolov5s.yaml", nc=2)


def _batch():
    generator = torch.Generator().manual_seed(0)
    imgs = torch.rand(2, 3, IMGSZ, IMGSZ, generator=generator)
    targets = torch.tensor([[0, 0, 0.3, 0.4, 0.3, 0.3], [0, 1, 0.7, 0.6, 0.2, 0.4], [1, 1, 0.5, 0.5, 0.6, 0.5]])
    return imgs, targets


def _build(teacher_file, hyp, methods=ALL_METHODS, **options):
    torch.manual_seed(0)
    student = Model("yolov5n.yaml", nc=2).train()
    teacher = kd_teacher.load_teacher(teacher_file)
    config = KDConfig(methods=methods, weight=1.0, **{"cilf_alpha": 0.5, **options})  # CILF's KL and MSE both on
    step = DistillStep(student, teacher, ComputeLoss(student.detect, hyp, nc=2, imgsz=IMGSZ), config, IMGSZ)
    return student, teacher, step


def _optimizer(student, step):
    optimizer = torch.optim.SGD(student.parameters(), lr=0.01, momentum=0.9)
    optimizer.add_param_group({"params": list(step.modules.parameters())})  # what train.py's loop does
    return optimizer


def test_teacher_loaded_strictly_frozen_and_not_the_students_weights(teacher_file, tmp_path):
    """Pitfall 1: the teacher carries the checkpoint's weights; a mismatching checkpoint raises."""
    teacher = kd_teacher.load_teacher(teacher_file)
    saved = checkpoint.safe_load(teacher_file)["model"]["state_dict"]
    assert all(torch.equal(value.half(), saved[name]) for name, value in teacher.module.state_dict().items())
    assert teacher.sha256 == kd_teacher.file_sha256(teacher_file) and teacher.path == str(teacher_file.resolve())
    assert len(teacher.module.model) == len(Model("yolov5s.yaml", nc=2).model) and teacher.detect.in_channels[0] == 128
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    teacher.train()  # someone calls train() on everything: BatchNorm must stay frozen
    assert not any(m.training for m in teacher.modules())
    # the wrapper freezes without patching: no instance train/forward shadowing the classes' methods
    assert not {"train", "forward"} & set(vars(teacher.module)) and not {"train", "forward"} & set(vars(teacher))
    bad = tmp_path / "bad.pt"
    record = weights.model_record(Model("yolov5s.yaml", nc=2))
    record["yaml"] = Model("yolov5n.yaml", nc=2).yaml  # weights that do not fit the declared architecture
    checkpoint.save_checkpoint({"model": record}, bad)
    with pytest.raises(ValueError, match="do not match"):
        kd_teacher.load_teacher(bad)
    with pytest.raises(FileNotFoundError):
        kd_teacher.load_teacher(tmp_path / "missing.pt")


def test_adapters_and_fgd_modules_trained_and_survive_save_and_resume(teacher_file, hyp, tmp_path):
    """Pitfall 2: KD modules are in the optimizer, change after a step, are saved and restored."""
    student, _, step = _build(teacher_file, hyp)
    assert set(step.modules) == {"adapters", "fgd"}
    assert [m.weight.shape[:2] for m in step.modules["adapters"]] == [(128, 64), (256, 128), (512, 256)]
    optimizer = _optimizer(student, step)
    in_optimizer = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert all(id(p) in in_optimizer for p in step.modules.parameters())
    before = copy.deepcopy(step.modules.state_dict())
    imgs, targets = _batch()
    for iteration in range(2):  # the zero-initialised GcBlock output convs move only from the second step on
        total, _ = step(student, imgs, targets, epoch=0, iteration=iteration)
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
    after = step.modules.state_dict()
    for name in ("adapters.0.weight", "fgd.1.align.weight", "fgd.0.conv_mask_s.weight",
                 "fgd.2.channel_add_conv_t.3.weight"):
        assert not torch.equal(before[name], after[name]), name
    path = checkpoint.save_checkpoint({"distill": step.state_dict()}, tmp_path / "last.pt")
    _, _, resumed = _build(teacher_file, hyp)
    resumed.load_state_dict(checkpoint.safe_load(path)["distill"])
    assert all(torch.equal(value, resumed.modules.state_dict()[name]) for name, value in after.items())
    assert checkpoint.safe_load(path)["distill"]["teacher"]["sha256"] == kd_teacher.file_sha256(teacher_file)
    old = checkpoint.safe_load(path)["distill"]  # a checkpoint from before the split: same module keys, old key
    old["config"]["warmup_iters"] = old["config"].pop("start_iter")
    assert {k.split(".")[0] for k in old["modules"]} == {"adapters", "fgd"}
    resumed.load_state_dict(old)
    _, _, other = _build(teacher_file, hyp, methods=("fgfi",))
    with pytest.raises(ValueError, match="methods"):
        other.load_state_dict(step.state_dict())


def test_teacher_bit_identical_after_training_steps_and_never_gets_grad(teacher_file, hyp):
    """Pitfall 3: teacher weights and BN statistics never change; no teacher .grad."""
    student, teacher, step = _build(teacher_file, hyp)
    teacher.train()
    before = copy.deepcopy(teacher.state_dict())
    optimizer = _optimizer(student, step)
    imgs, targets = _batch()
    for iteration in range(3):
        total, _ = step(student, imgs, targets, epoch=0, iteration=iteration)
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
    assert all(torch.equal(value, teacher.state_dict()[name]) for name, value in before.items())
    assert all(p.grad is None for p in teacher.parameters())


@pytest.mark.parametrize("methods,cilf_kl", [(("fgfi",), "outputs"), (("cilf",), "outputs"),
                                             (("cilf",), "features"), (("fgd",), "outputs"),
                                             (("ogd",), "outputs")])
def test_kd_only_loss_gives_nonzero_student_gradient(teacher_file, hyp, methods, cilf_kl):
    """Pitfall 4: the KD loss alone back-propagates into the student's backbone."""
    student, _, step = _build(teacher_file, hyp, methods=methods, cilf_kl=cilf_kl)
    imgs, targets = _batch()
    with step.student_recorder:
        preds = student(imgs)
    with torch.no_grad(), step.teacher_recorder:
        teacher_out = step.teacher(imgs)
    terms = step.kd_terms(preds, teacher_out[1], step.student_recorder.features, step.teacher_recorder.features,
                          targets)
    assert terms and all(torch.isfinite(v) for v in terms.values())
    sum(terms.values()).backward()
    assert student.model[0].conv.weight.grad.abs().sum() > 0


def test_one_student_forward_named_terms_and_batch_scaling(teacher_file, hyp):
    student, teacher, step = _build(teacher_file, hyp)
    calls = {"student": 0, "teacher": 0}
    student.model[0].register_forward_hook(lambda *a: calls.__setitem__("student", calls["student"] + 1))
    teacher.module.model[0].register_forward_hook(lambda *a: calls.__setitem__("teacher", calls["teacher"] + 1))
    imgs, targets = _batch()
    total, terms = step(student, imgs, targets, epoch=0, iteration=0)
    assert calls == {"student": 1, "teacher": 1}
    assert list(terms) == ["task/box", "task/obj", "task/cls", "distill/fgfi", "distill/kl", "distill/mse",
                           "distill/fgd_fg", "distill/fgd_bg", "distill/fgd_at", "distill/fgd_glb"]
    assert all(not v.requires_grad and torch.isfinite(v) and v > 0 for v in terms.values())
    assert torch.isclose(total, sum(terms.values()) * imgs.shape[0])


def test_cilf_output_kl_alone_skips_the_adapters_and_keeps_their_layout(teacher_file, hyp):
    """CILF's default (output KL, alpha 1) uses no adapted feature: the adapters are built (one checkpoint layout
    whatever alpha is) but not run, the MSE term is 0 and the total is detection + KL. alpha 0.5 runs them."""
    calls = []
    for alpha in (1.0, 0.5):
        student, _, step = _build(teacher_file, hyp, methods=("cilf",), cilf_alpha=alpha)
        assert "adapters" in step.modules
        hooks = [m.register_forward_hook(lambda *a: calls.append(alpha)) for m in step.modules["adapters"]]
        imgs, targets = _batch()
        total, terms = step(student, imgs, targets, epoch=0, iteration=0)
        total.backward()
        if alpha == 1.0:
            assert not calls and terms["distill/mse"] == 0 and terms["distill/kl"] > 0
            assert all(p.grad is None for p in step.modules.parameters())
            assert torch.isclose(total, (terms["task/box"] + terms["task/obj"] + terms["task/cls"]
                                         + terms["distill/kl"]) * imgs.shape[0])
        else:
            assert calls.count(0.5) == 3 and terms["distill/mse"] > 0
        for hook in hooks:
            hook.remove()


def test_schedule_skips_teacher_and_zeroes_kd_terms(teacher_file, hyp, tmp_path):
    student, teacher, step = _build(teacher_file, hyp, start_iter=5, stop_epoch=2)
    step.plot_path = tmp_path / "kd_masks.jpg"  # written at the first batch that runs the teacher
    calls = []
    teacher.module.model[0].register_forward_hook(lambda *a: calls.append(1))
    imgs, targets = _batch()
    for epoch, iteration, on in ((0, 4, False), (0, 5, True), (1, 900, True), (2, 901, False)):
        _, terms = step(student, imgs, targets, epoch=epoch, iteration=iteration)
        assert (terms["distill/fgfi"] > 0) == on and (terms["distill/fgd_fg"] > 0) == on
    assert len(calls) == 2 and step.plot_path is None and (tmp_path / "kd_masks.jpg").stat().st_size > 0


def test_empty_targets_give_finite_terms_and_zero_imitation(teacher_file, hyp):
    """Pitfall 6: a batch without targets."""
    student, _, step = _build(teacher_file, hyp)
    imgs, _ = _batch()
    total, terms = step(student, imgs, torch.zeros(0, 6), epoch=0, iteration=0)
    total.backward()
    assert torch.isfinite(total) and all(torch.isfinite(v) for v in terms.values())
    assert terms["distill/fgfi"] == 0 and terms["distill/kl"] == 0 and terms["distill/mse"] == 0
    assert terms["distill/fgd_fg"] == 0 and terms["distill/fgd_bg"] > 0  # uniform background
    assert all(torch.isfinite(p.grad).all() for p in student.parameters() if p.grad is not None)


def test_incompatible_teachers_raise_clear_errors(teacher_file, hyp):
    student = Model("yolov5n.yaml", nc=2)
    other_nc = kd_teacher.Teacher(Model("yolov5n.yaml", nc=3))
    loss = ComputeLoss(student.detect, hyp, nc=2, imgsz=IMGSZ)
    with pytest.raises(ValueError, match="cilf-kl features"):
        DistillStep(student, other_nc, loss, KDConfig(methods=("cilf",)), IMGSZ)
    DistillStep(student, other_nc, loss, KDConfig(methods=("cilf",), cilf_kl="features"), IMGSZ).close()
    with pytest.raises(ValueError, match="kd ogd needs .*nc 2 vs 3"):
        DistillStep(student, other_nc, loss, KDConfig(methods=("ogd",)), IMGSZ)
    with pytest.raises(ValueError, match="same strides"):  # layer 2 (stride 4) vs layer 4 (stride 8)
        kd_teacher.check_compatible([(16, 16, 16)], [(32, 8, 8)], IMGSZ)
    with pytest.raises(ValueError, match="levels"):
        kd_teacher.check_compatible([(16, 16, 16)], [], IMGSZ)


def test_custom_layers_and_recorders_removed_by_close(teacher_file, hyp):
    student, _, step = _build(teacher_file, hyp, layers=(17, 20))
    assert len(step.modules["adapters"]) == 2 and len(step.modules["fgd"]) == 2
    imgs, targets = _batch()
    total, _ = step(student, imgs, targets, epoch=0, iteration=0)
    total.backward()
    step.close()
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in student.modules())


def test_kd_terms_computed_in_float32_under_autocast(teacher_file, hyp):
    student, _, step = _build(teacher_file, hyp)
    imgs, targets = _batch()
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):  # the loop's AMP, on CPU
        total, terms = step(student, imgs, targets, epoch=0, iteration=0)
    total.backward()
    assert all(terms[name].dtype == torch.float32 and torch.isfinite(terms[name]) for name in step.term_names)
    assert step.modules["adapters"][0].weight.grad.abs().sum() > 0


def test_methods_run_in_registry_order_whatever_the_flag_order(teacher_file, hyp):
    """results.csv columns do not depend on the order of --kd; fgfi + cilf share one adapter set."""
    _, _, step = _build(teacher_file, hyp, methods=("fgd", "cilf", "fgfi"))
    assert [m.name for m in step.methods] == ["fgfi", "cilf", "fgd"] and list(step.modules) == ["adapters", "fgd"]
    assert step.term_names[0] == "distill/fgfi" and step.term_names[-1] == "distill/fgd_glb"


def test_adapter_kernel_option_builds_1x1_connectors(teacher_file, hyp):
    import train_kd

    _, _, default = _build(teacher_file, hyp, methods=("fgfi",))
    assert all(a.kernel_size == (3, 3) and a.padding == (1, 1) for a in default.modules["adapters"])
    student, _, step = _build(teacher_file, hyp, methods=("fgfi",), adapter_kernel=1)
    assert all(a.kernel_size == (1, 1) and a.padding == (0, 0) for a in step.modules["adapters"])
    assert sum(p.numel() for p in step.modules.parameters()) < sum(p.numel() for p in default.modules.parameters()) / 4
    imgs, targets = _batch()
    _, terms = step(student, imgs, targets, epoch=0, iteration=0)
    assert torch.isfinite(terms["distill/fgfi"]) and terms["distill/fgfi"] > 0
    opt = train_kd.parse_opt(["--teacher", "t.pt", "--kd-adapter-kernel", "1"])
    assert train_kd.build_config(opt).adapter_kernel == 1
    with pytest.raises(ValueError, match="adapter_kernel"):
        KDConfig(adapter_kernel=5)
