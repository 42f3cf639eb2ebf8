"""Teacher handling: strict loading, dtype resolution, the frozen ``Teacher`` wrapper, compatibility checks.

The teacher is loaded by the project's checkpoint reader (``models.weights.load_model``), never fused
(BatchNorm stays a separate, frozen module), frozen, in eval mode for good, and never wrapped in DDP, put in the
optimizer, the EMA or a checkpoint. Its path and sha256 (computed once, at load) go into the run directory and
the ``distill`` checkpoint entry instead.

``Teacher`` wraps the loaded model without patching it: the wrapper's ``train()`` keeps eval mode whatever is
asked, and its ``forward`` runs the wrapped model under the teacher's own autocast (bf16, or explicitly off for
fp32) and returns FP32; for bf16 a forward pre-hook (a registration, not a patch) on the Detect head hands the
neck features to the head, and to any recorder attached later, in FP32, so KD losses never see bf16 tensors.
``dtype=None`` leaves the teacher under whatever autocast the caller runs. Recorders attach to
``teacher.module`` (the wrapped YOLOv5 model), the wrapper itself has no layers of its own.
"""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import torch
from torch import nn

from models import weights
from utils import amp

LOGGER = logging.getLogger(__name__)


def resolve_dtype(device: torch.device | str, name: str | None) -> torch.dtype | None:
    """``--teacher-dtype``: None follows the training loop's autocast; 'fp32'; 'bf16' where the device has
    native bf16, else float32. The decision is logged."""
    if name is None:
        LOGGER.info("teacher precision: the training precision (--teacher-dtype not given)")
        return None
    if name not in ("fp32", "bf16"):
        raise ValueError(f"--teacher-dtype {name!r}: choose fp32 or bf16")
    device = torch.device(device)
    if name == "fp32":
        dtype, why = torch.float32, "--teacher-dtype fp32"
    elif device.type == "cpu":
        native, why = amp.cpu_bf16_support()
        dtype = torch.bfloat16 if native else torch.float32
        why = f"--teacher-dtype bf16; {why}" if native else f"--teacher-dtype bf16 ignored: {why}"
    elif device.type == "cuda" and amp.cuda_bf16_support(device):
        dtype, why = torch.bfloat16, "--teacher-dtype bf16 on CUDA"
    else:
        dtype, why = torch.float32, f"--teacher-dtype bf16 ignored: no bf16 on {device.type}"
    LOGGER.info(f"teacher precision: {'bf16 autocast' if dtype == torch.bfloat16 else 'FP32'} ({why})")
    return dtype


def _float_features(module: nn.Module, args: tuple):
    """Detect pre-hook: the neck features (a list of tensors) in FP32, before any recorder copies them."""
    if len(args) == 1 and isinstance(args[0], (list, tuple)):
        return (amp.to_float(list(args[0])),)
    return amp.to_float(args)


class Teacher(nn.Module):
    """A frozen teacher: ``module`` (the YOLOv5 model, FP32 weights, no gradients) in eval mode for good.

    Args:
        model: the teacher model; frozen here (requires_grad False, eval).
        dtype: torch.bfloat16 / torch.float32 for the teacher's own precision, or None (the caller's autocast).
        path, sha256: where it came from, recorded by DistillStep.state_dict() and kd.yaml.
    """

    def __init__(self, model: nn.Module, dtype: torch.dtype | None = None, path: str | None = None,
                 sha256: str | None = None):
        super().__init__()
        if dtype not in (None, torch.float32, torch.bfloat16):
            raise ValueError(f"teacher dtype {dtype} not supported: use torch.float32 or torch.bfloat16")
        self.module = model.float().requires_grad_(False)
        self.dtype, self.path, self.sha256 = dtype, path, sha256
        head = getattr(model, "detect", None)
        if dtype not in (None, torch.float32) and head is not None:
            self._cast_hook = head.register_forward_pre_hook(_float_features)
        self.train(False)

    def train(self, mode: bool = True) -> "Teacher":
        """Whatever is asked, BatchNorm and dropout stay in eval (mmrazor's rule)."""
        return super().train(False)

    def forward(self, imgs: torch.Tensor):
        if self.dtype is None:
            return self.module(imgs)
        device_type = next(self.module.parameters()).device.type
        with amp.Precision(device_type, self.dtype).autocast():
            out = self.module(imgs)
        return amp.to_float(out)

    @property
    def detect(self) -> nn.Module:
        return self.module.detect

    @property
    def nc(self) -> int:
        return self.module.nc


def load_teacher(path: str | Path, device: torch.device | str = "cpu", dtype: torch.dtype | None = None) -> Teacher:
    """Load a teacher strictly (our or an upstream YOLOv5 .pt) into a ``Teacher``; its sha256 is computed here.

    ``models.weights.load_model`` raises on any mismatch between the weights and the architecture: a teacher with
    random weights is never an acceptable fallback. Weights stay FP32.
    """
    path = Path(path).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"teacher checkpoint {path} not found")
    sha256 = file_sha256(path)
    model = weights.load_model(path, device=device, fuse=False)
    return Teacher(model, dtype, str(path), sha256)


def _class_list(names: dict) -> str:
    listed = [names[k] for k in sorted(names)]
    shown = ", ".join(listed[:6]) + (f", ... ({len(listed)} classes)" if len(listed) > 6 else "")
    return f"[{shown}]"


def check_classes(teacher_names: dict, data_names: dict, teacher_path, data_file, class_methods: list[str]) -> None:
    """The documented rule for a teacher trained on other classes than the dataset's (``data_names``, the student's).

    Feature-level KD (fgfi, fgd, cwd, pkd, CILF on features) transfers whatever the teacher's classes: a warning
    naming both. Methods that imitate the outputs class by class (``class_methods``: ogd, CILF's output KL) need the
    same classes in the same order: a ValueError naming both files and class lists.
    """
    teacher_list = [teacher_names[k] for k in sorted(teacher_names)]
    data_list = [data_names[k] for k in sorted(data_names)]
    if teacher_list == data_list:
        return
    both = (f"teacher {teacher_path} has classes {_class_list(teacher_names)}, dataset {data_file} has "
            f"{_class_list(data_names)}")
    if class_methods:
        raise ValueError(f"{both}: {', '.join(class_methods)} compare outputs class by class and need the same classes "
                         "in the same order; use a teacher trained on this dataset or feature-level KD "
                         "(fgfi, fgd, cwd, pkd, --cilf-kl features)")
    LOGGER.warning(f"WARNING: {both}: allowed for feature-level KD, which does not compare classes")


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


def head_mismatches(student_detect: nn.Module, teacher_detect: nn.Module) -> list[str]:
    """What differs between two Detect heads among nc, levels x anchors and anchor shapes (grid units); [] if none."""
    problems = []
    if student_detect.nc != teacher_detect.nc:
        problems.append(f"nc {student_detect.nc} vs {teacher_detect.nc}")
    if (student_detect.nl, student_detect.na) != (teacher_detect.nl, teacher_detect.na):
        problems.append(f"levels x anchors {student_detect.nl}x{student_detect.na} vs "
                        f"{teacher_detect.nl}x{teacher_detect.na}")
    else:
        student_anchors, teacher_anchors = student_detect.anchors.float().cpu(), teacher_detect.anchors.float().cpu()
        for level, (s, t) in enumerate(zip(student_anchors, teacher_anchors)):
            if not torch.allclose(s, t, atol=1e-4):
                problems.append(f"anchor shapes differ (level {level}, grid units: {s.tolist()} vs {t.tolist()})")
                break
    return problems


def check_output_compatible(student_detect: nn.Module, teacher_detect: nn.Module) -> None:
    """Output-level KL needs the same nc, number of levels and anchors (grid units); else ValueError."""
    problems = head_mismatches(student_detect, teacher_detect)
    if problems:
        raise ValueError("CILF KL on outputs needs teacher and student heads to agree (student vs teacher: "
                         + "; ".join(problems) + "): use --cilf-kl features or a matching teacher (AutoAnchor may have "
                         "re-fitted the student's anchors: --noautoanchor keeps the yaml's)")
