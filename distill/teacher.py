"""Teacher handling: strict loading, freezing, and teacher/student compatibility checks.

The teacher is loaded by the project's checkpoint reader (passed in as ``load_model``, i.e.
``models.weights.load_model``, so distill/ does not import models/ at runtime), never fused (BatchNorm stays
a separate, frozen module), frozen, in eval mode for good, and never wrapped in DDP, put in the optimizer,
the EMA or a checkpoint. Its path and sha256 go into the run directory instead.
"""
from __future__ import annotations

import hashlib
import types
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch
from torch import nn

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


def load_teacher(path: str | Path, load_model: Callable[..., "Model"], device: torch.device | str = "cpu"
                 ) -> "Model":
    """Load a teacher strictly (our or an upstream YOLOv5 .pt) and freeze it.

    ``load_model(path, device=..., fuse=False)`` must raise on any mismatch between the weights and the
    architecture: a teacher with random weights is never an acceptable fallback.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"teacher checkpoint {path} not found")
    model = load_model(path, device=device, fuse=False)
    return freeze_teacher(model.float())


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
