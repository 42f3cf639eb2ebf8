"""Mixed precision (issue 11): precision resolution with the capability check mocked, bf16 training on the CPU
(FP32 grads, FP32-format checkpoints that validate in FP32), and a bf16 teacher feeding FP32 KD losses.

Synthetic data, yolov5n, 64 px. bf16 autocast works on any CPU (emulated where not native), so mocking
"native bf16" to True only exercises the code path; timings are not tested here (benchmarks/bf16_speed.py).
"""
from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
import yaml

import detect
import train
from engine.step import detection_step
import val
from distill import teacher as kd_teacher
from distill.config import KDConfig
from distill.step import DistillStep
from models import weights
from models.yolo import Model
from tests.test_train import COMMON, make_dataset
from utils import amp, checkpoint
from utils.loss import ComputeLoss

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def native(monkeypatch):
    """Mock the CPU capability check: native(True) / native(False)."""
    def set_support(value: bool):
        monkeypatch.setattr(amp, "cpu_bf16_support", lambda: (value, f"mocked native bf16 = {value}"))
    return set_support


def test_cpu_flags_parsed_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse avx512f avx512_bf16 amx_tile\n\nprocessor\t: 1\n")
    assert {"avx512_bf16", "amx_tile"} <= amp.cpu_flags(str(info))
    assert amp.cpu_flags(str(tmp_path / "missing")) == frozenset()


def test_cpu_falls_back_to_fp32_without_native_bf16(native, caplog):
    native(False)
    with caplog.at_level(logging.INFO, logger="utils.amp"):
        precision = amp.resolve("cpu", amp=True)
    assert precision.dtype == torch.float32 and not precision.enabled and not precision.use_scaler
    assert "emulated" in caplog.text and "mocked native bf16 = False" in caplog.text
    assert amp.inference_precision("cpu", half=True).dtype == torch.float32
    assert kd_teacher.resolve_dtype("cpu", "bf16") == torch.float32
    assert amp.resolve("cpu").dtype == torch.float32  # the default falls back to FP32 too


def test_resolution_rules(native, monkeypatch):
    native(True)
    cpu = amp.resolve("cpu", amp=True)
    assert cpu.dtype == torch.bfloat16 and not cpu.use_scaler  # bf16: no GradScaler
    assert amp.resolve("cpu").dtype == torch.bfloat16  # bf16 is the CPU default where native (docs/bf16.md)
    assert amp.resolve("cpu", amp=False).dtype == torch.float32
    assert amp.resolve("cpu", amp=True, amp_dtype="fp16").dtype == torch.float32
    assert amp.resolve("cpu", amp=True, check=lambda dtype: False).dtype == torch.float32
    assert amp.inference_precision("cpu", half=True).dtype == torch.bfloat16
    assert amp.inference_precision("cpu", half=False).dtype == torch.float32
    assert kd_teacher.resolve_dtype("cpu", None) is None and kd_teacher.resolve_dtype("cpu", "bf16") == torch.bfloat16
    cuda = amp.resolve("cuda")  # upstream: FP16 + GradScaler by default
    assert cuda.dtype == torch.float16 and cuda.use_scaler
    assert amp.resolve("cuda", amp=False).dtype == torch.float32
    monkeypatch.setattr(amp, "cuda_bf16_support", lambda device: True)
    cuda_bf16 = amp.resolve("cuda", amp=True, amp_dtype="bf16")
    assert cuda_bf16.dtype == torch.bfloat16 and not cuda_bf16.use_scaler
    monkeypatch.setattr(amp, "cuda_bf16_support", lambda device: False)
    assert amp.resolve("cuda", amp_dtype="bf16").dtype == torch.float32


class _Probe:
    """DetectionStep wrapper recording the autocast state inside the step and every gradient's dtype."""

    def __init__(self, ctx):
        self.inner = detection_step(ctx)
        self.modules, self.checkpoint_key, self.term_names = None, None, self.inner.term_names
        self.autocast, self.loss_dtypes, self.grad_dtypes = set(), set(), set()
        for p in ctx.model.parameters():
            p.register_post_accumulate_grad_hook(lambda param: self.grad_dtypes.add(param.grad.dtype))

    def __call__(self, model, imgs, targets, *, epoch, iteration):
        enabled = torch.is_autocast_enabled("cpu")
        self.autocast.add(torch.get_autocast_dtype("cpu") if enabled else torch.float32)
        total, terms = self.inner(model, imgs, targets, epoch=epoch, iteration=iteration)
        self.loss_dtypes |= {total.dtype, *(v.dtype for v in terms.values())}
        return total, terms

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


def _train(data, tmp_path, name, **kwargs):
    probes = []

    def factory(ctx):
        probes.append(_Probe(ctx))
        return probes[-1]

    opt = train.run(data=data, epochs=1, project=str(tmp_path), name=name, noplots=True, step_factory=factory,
                    **{**COMMON, **kwargs})
    return opt, probes[0]


def _tensors(obj):
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _tensors(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _tensors(v)


@pytest.fixture(scope="module")
def bf16_run(tmp_path_factory):
    """One epoch with --amp on a (mocked) native-bf16 CPU, keeping the unstripped last.pt."""
    mp = pytest.MonkeyPatch()
    mp.setattr(amp, "cpu_bf16_support", lambda: (True, "mocked native bf16 = True"))
    data = make_dataset(tmp_path_factory.mktemp("synth_amp"))
    saves = []
    callbacks = train.Callbacks()
    callbacks.register("on_model_save", lambda path, epoch, best: saves.append(checkpoint.safe_load(path)))
    try:
        opt, probe = _train(data, tmp_path_factory.mktemp("runs_amp"), "bf16", amp=True, callbacks=callbacks)
    finally:
        mp.undo()
    return data, opt, probe, saves


def test_bf16_training_step_fp32_grads_and_checkpoints(bf16_run):
    _, opt, probe, saves = bf16_run
    assert probe.autocast == {torch.bfloat16}  # the step ran under bf16 autocast
    assert probe.loss_dtypes == {torch.float32}  # the loss is FP32
    assert probe.grad_dtypes == {torch.float32}  # FP32 master weights get FP32 grads
    ckpt = saves[0]  # un-stripped: model, EMA and optimizer state
    assert not any(t.dtype == torch.bfloat16 for t in _tensors(ckpt))
    assert all(t.dtype == torch.float32 for t in _tensors(ckpt["optimizer"]["state"]) if t.is_floating_point())
    record_dtypes = {t.dtype for t in ckpt["ema"]["state_dict"].values() if t.is_floating_point()}
    assert record_dtypes <= {torch.float16, torch.float32}  # the project's record format, as for FP32 runs


def test_no_native_bf16_trains_in_fp32(native, tmp_path, caplog):
    native(False)
    data = make_dataset(tmp_path / "synth")
    with caplog.at_level(logging.INFO, logger="utils.amp"):
        _, probe = _train(data, tmp_path / "runs", "fallback", amp=True, noval=True)
    assert probe.autocast == {torch.float32} and probe.grad_dtypes == {torch.float32}
    assert "AMP: FP32" in caplog.text


def test_bf16_checkpoint_validates_in_fp32_and_with_half(bf16_run, native, tmp_path):
    data, opt, _, _ = bf16_run
    best = Path(opt.save_dir) / "weights" / "best.pt"
    model = weights.load_model(best)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    common = dict(data=data, weights=str(best), batch_size=4, imgsz=64, device="cpu", workers=0, plots=False,
                  project=str(tmp_path), exist_ok=True)
    fp32, _, _ = val.run(name="fp32", **common)
    native(True)
    bf16, _, _ = val.run(name="bf16", half=True, **common)
    assert all(torch.isfinite(torch.tensor(fp32[:4]))) and all(torch.isfinite(torch.tensor(bf16[:4])))
    images = Path(data["path"]) / "images" / "val"
    result = detect.run(weights=str(best), source=str(images), imgsz=(64, 64), device="cpu", half=True,
                        conf_thres=0.0, project=str(tmp_path), name="detect", nosave=True)
    assert all(det.dtype == torch.float32 for det in result.detections.values())


@pytest.fixture(scope="module")
def teacher_file(untrained_checkpoint):
    return untrained_checkpoint("yolov5s.yaml", nc=2)


def test_kd_losses_fp32_with_bf16_teacher(teacher_file):
    """FP32 student loop, bf16 teacher (the loop under bf16 autocast: tests/distill/test_step.py)."""
    hyp = yaml.safe_load((ROOT / "data" / "hyps" / "hyp.scratch-low.yaml").read_text())
    torch.manual_seed(0)
    student = Model("yolov5n.yaml", nc=2).train()
    teacher = kd_teacher.load_teacher(teacher_file, dtype=torch.bfloat16)
    conv_dtypes = []
    teacher.module.model[0].register_forward_hook(lambda module, args, out: conv_dtypes.append(out.dtype))
    step = DistillStep(student, teacher, ComputeLoss(student.detect, hyp, nc=2, imgsz=64),
                       KDConfig(methods=("fgfi", "cilf", "fgd"), weight=1.0), 64)
    imgs = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    targets = torch.tensor([[0, 0, 0.3, 0.4, 0.3, 0.3], [1, 1, 0.5, 0.5, 0.6, 0.5]])
    with amp.Precision("cpu", torch.float32).autocast():
        total, terms = step(student, imgs, targets, epoch=0, iteration=0)
        with torch.no_grad(), step.teacher_recorder:
            outputs = teacher(imgs)
            features = step.teacher_recorder.features
    total.backward()
    assert conv_dtypes[-1] == torch.bfloat16  # the teacher really ran in bf16
    assert all(f.dtype == torch.float32 for f in features)  # ... but hands FP32 features to the recorder
    assert outputs[0].dtype == torch.float32 and all(o.dtype == torch.float32 for o in outputs[1])
    assert total.dtype == torch.float32
    assert all(terms[name].dtype == torch.float32 and torch.isfinite(terms[name]) for name in step.term_names)
    assert all(p.grad.dtype == torch.float32 for p in student.parameters() if p.grad is not None)
    assert all(p.grad is None for p in teacher.parameters())


def test_fp32_teacher_ignores_the_loops_autocast(teacher_file):
    teacher = kd_teacher.load_teacher(teacher_file, dtype=torch.float32)
    conv_dtypes = []
    teacher.module.model[0].register_forward_hook(lambda module, args, out: conv_dtypes.append(out.dtype))
    with torch.no_grad(), amp.Precision("cpu", torch.bfloat16).autocast():
        teacher(torch.rand(1, 3, 64, 64))
    assert conv_dtypes == [torch.float32]


class _AutocastFault(torch.nn.Module):
    """A model whose autocast forward is wrong by ``shift`` px on every box (or NaN): what check_amp must catch."""

    def __init__(self, model, shift=float("nan")):
        super().__init__()
        self.model, self.shift = model, shift

    def forward(self, x):
        out = self.model(x)
        if torch.is_autocast_enabled("cpu"):
            pred = out[0].clone()
            pred[..., :4] += self.shift
            return (pred, *out[1:])
        return out


def test_check_amp_passes_bf16_rounding_of_a_fine_tune_model_and_catches_faults(yolov5n_pt):
    """The fine-tune regime's model (COCO yolov5n, a new 3-class head) in bf16 rounds boxes by up to ~12 px of a
    256 px image, which the old pixel check (atol 0.5) refused; NaN and a 20 px shift must still fail."""
    coco = weights.load_model(yolov5n_pt, fuse=False).float()
    torch.manual_seed(0)
    model = Model("yolov5n.yaml", nc=3)
    model.load_state_dict(weights.intersect_state(coco.state_dict(), model.state_dict()), strict=False)
    cpu = torch.device("cpu")
    assert amp.check_amp(model, cpu, torch.bfloat16)
    assert model.training  # the check leaves the model in train mode
    assert not amp.check_amp(_AutocastFault(model), cpu, torch.bfloat16)
    assert not amp.check_amp(_AutocastFault(model, shift=20.0), cpu, torch.bfloat16)
