"""Teacher handling: strict loading, freezing, and teacher/student compatibility checks.

The teacher is loaded by the project's checkpoint reader (passed in as ``load_model``, i.e.
``models.weights.load_model``, so distill/ does not import models/ at runtime), never fused (BatchNorm stays
a separate, frozen module), frozen, in eval mode for good, and never wrapped in DDP, put in the optimizer,
the EMA or a checkpoint. Its path and sha256 go into the run directory instead.

Precision is a property of the teacher object (``set_precision``), independent of the training loop's: its
forward runs under its own autocast (bf16, or explicitly off for fp32) and returns FP32 outputs, and a pre-hook
on its Detect head hands the neck features to the head (and to any recorder attached later) in FP32, so KD
losses never see bf16 tensors. ``None`` leaves the teacher under whatever autocast the caller runs.
"""
from __future__ import annotations

import hashlib
import types
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch
from torch import nn

from utils import amp

if TYPE_CHECKING:  # type hints only
    from models.yolo import Model


def _train_stays_eval(self: nn.Module, mode: bool = True) -> nn.Module:
    """Replacement ``train()`` for a frozen teacher: whatever is asked, BatchNorm and dropout stay in eval."""
    return nn.Module.train(self, False)


def freeze_teacher(model: nn.Module) -> nn.Module:
    """eval(), requires_grad_(False), and a ``train()`` that keeps eval mode (mmrazor's rule). Returns model."""
    model.requires_grad_(False)
    model.train = types.MethodType(_train_stays_eval, model)  # instance attribute shadows nn.Module.train
    return model.eval()


class _PrecisionForward:
    """Replacement ``forward`` of a teacher: the class's forward under ``torch.autocast(dtype)`` (float32:
    autocast explicitly off), outputs cast to FP32. Bound to the instance with ``types.MethodType``."""

    def __init__(self, dtype: torch.dtype):
        self.dtype = dtype

    def __call__(self, model: nn.Module, *args, **kwargs):
        device_type = next(model.parameters()).device.type
        precision = amp.Precision(device_type, self.dtype)
        with precision.autocast():
            out = type(model).forward(model, *args, **kwargs)
        return amp.to_float(out)


def _float_features(module: nn.Module, args: tuple):
    """Detect pre-hook: the neck features (a list of tensors) in FP32, before any recorder copies them."""
    if len(args) == 1 and isinstance(args[0], (list, tuple)):
        return (amp.to_float(list(args[0])),)
    return amp.to_float(args)


def set_precision(model: nn.Module, dtype: torch.dtype | None) -> nn.Module:
    """Run the teacher's forward in ``dtype`` (torch.bfloat16 / torch.float32) whatever the caller's autocast,
    with FP32 outputs and FP32 head-input features; ``None`` leaves it alone. Returns model. Call it before any
    recorder is attached (the cast hook must run before the recorder's own pre-hook)."""
    if dtype is None:
        return model
    if dtype not in (torch.float32, torch.bfloat16):
        raise ValueError(f"teacher dtype {dtype} not supported: use torch.float32 or torch.bfloat16")
    model.forward = types.MethodType(_PrecisionForward(dtype), model)  # instance attribute shadows the class's
    head = getattr(model, "detect", None)
    if dtype != torch.float32 and head is not None:
        model._teacher_cast_hook = head.register_forward_pre_hook(_float_features)
    model.teacher_dtype = dtype
    return model


def load_teacher(path: str | Path, load_model: Callable[..., "Model"], device: torch.device | str = "cpu",
                 dtype: torch.dtype | None = None) -> "Model":
    """Load a teacher strictly (our or an upstream YOLOv5 .pt), freeze it, and fix its precision (set_precision).

    ``load_model(path, device=..., fuse=False)`` must raise on any mismatch between the weights and the
    architecture: a teacher with random weights is never an acceptable fallback. Weights stay FP32.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"teacher checkpoint {path} not found")
    model = load_model(path, device=device, fuse=False)
    return set_precision(freeze_teacher(model.float()), dtype)


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_compatible(student_shapes: list[tuple[int, int, int]], teacher_shapes: list[tuple[int, int, int]],
                     imgsz: int) -> None:
    """Same number of distilled levels and the same (H, W), hence stride, per level; else ValueError.

    Shapes are (C, H, W) per level from a dummy forward at ``imgsz`` (see distill.adapters.probe_features).
    """
    if len(student_shapes) != len(teacher_shapes):
        raise ValueError(f"student has {len(student_shapes)} distilled levels, teacher {len(teacher_shapes)}: "
                         "choose --kd-layers that exist in both")
    for level, (student, teacher) in enumerate(zip(student_shapes, teacher_shapes)):
        if student[1:] != teacher[1:]:
            raise ValueError(f"distilled level {level}: student feature {student[1]}x{student[2]} (stride "
                             f"{imgsz / student[1]:g}) vs teacher {teacher[1]}x{teacher[2]} (stride "
                             f"{imgsz / teacher[1]:g}) at {imgsz} px: teacher and student need the same strides")


def check_output_compatible(student_detect: nn.Module, teacher_detect: nn.Module) -> None:
    """Output-level KL needs the same nc, number of levels and anchors (grid units); else ValueError."""
    problems = []
    if student_detect.nc != teacher_detect.nc:
        problems.append(f"nc {student_detect.nc} vs {teacher_detect.nc}")
    if (student_detect.nl, student_detect.na) != (teacher_detect.nl, teacher_detect.na):
        problems.append(f"levels x anchors {student_detect.nl}x{student_detect.na} vs "
                        f"{teacher_detect.nl}x{teacher_detect.na}")
    elif not torch.allclose(student_detect.anchors.float().cpu(), teacher_detect.anchors.float().cpu(), atol=1e-4):
        problems.append("anchor shapes differ")
    if problems:
        raise ValueError("CILF KL on outputs needs teacher and student heads to agree (student vs teacher: "
                         + "; ".join(problems) + "): use --cilf-kl features or a matching teacher (AutoAnchor may have "
                         "re-fitted the student's anchors: --noautoanchor keeps the yaml's)")
