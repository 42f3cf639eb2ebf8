"""The distillation-method interface, and what DistillStep shares between methods.

A method is a class with a registry ``name``, its ``term_names`` (results.csv columns, in order), its trainable
``modules`` (an nn.Module or None; DistillStep puts it under ``modules[name]``) and ``terms(...)``, the weighted
per-image KD terms of one batch. Methods that read the shared FGFI imitation masks or adapted student features
set ``needs_anchors`` / ``uses_adapters``: DistillStep then builds one adapter set (``modules["adapters"]``,
3x3 convs student -> teacher channels, built before any method's own modules) and hands both out lazily through
``Shared``, so fgfi + cilf share one adapter set and one set of masks, as before the split.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import nn

from distill import adapters, masks

if TYPE_CHECKING:  # type hints only
    from distill.config import KDConfig


@dataclass(frozen=True)
class Setup:
    """What a method may use at construction: channels per distilled level (student and teacher lists of one
    length: DistillStep checks the levels first, distill.teacher.check_compatible), both Detect heads, and the class
    names ({index: name}) of both models where they carry them (None otherwise)."""

    student_channels: list[int]
    teacher_channels: list[int]
    student_detect: nn.Module
    teacher_detect: nn.Module
    student_names: dict | None = None
    teacher_names: dict | None = None


class Shared:
    """Per-batch inputs several methods read, each computed once on first use.

    imitation_masks: FGFI masks (B, 1, H, W) per distilled level (``--fgfi-psi``/``--fgfi-assign``, the teacher's
    anchors at the distilled strides). adapted: the student features through the shared adapters (B, C_t, H, W).
    """

    def __init__(self, config: "KDConfig", adapter_set: nn.Module | None, anchors: list[torch.Tensor] | None,
                 student_feats: list[torch.Tensor], teacher_feats: list[torch.Tensor], targets: torch.Tensor):
        self.config, self.adapter_set, self.anchors = config, adapter_set, anchors
        self.student_feats, self.teacher_feats, self.targets = student_feats, teacher_feats, targets
        self.batch_size = student_feats[0].shape[0]

    @cached_property
    def imitation_masks(self) -> list[torch.Tensor]:
        config = self.config
        shapes = [tuple(feat.shape[2:]) for feat in self.teacher_feats]
        return [masks.fgfi_masks(self.targets, anchors[None], [shape], self.batch_size, config.fgfi_psi,
                                 config.fgfi_assign, config.anchor_t)[0]
                for anchors, shape in zip(self.anchors, shapes)]

    @cached_property
    def adapted(self) -> list[torch.Tensor]:
        return adapters.adapt(self.adapter_set, self.student_feats)


def level_names(prefix: str, setup: Setup, layers: tuple[int, ...] | None) -> tuple[str, ...]:
    """``distill/<prefix>_p<log2 stride>`` per head level, or ``distill/<prefix>_l<index>`` for ``--kd-layers``.

    Falls back to ``_l0, _l1, ...`` (level positions) when the head's strides are not distinct powers of two.
    """
    levels = len(setup.teacher_channels)
    if layers is not None:
        return tuple(f"distill/{prefix}_l{index}" for index in layers)
    strides = [float(s) for s in getattr(setup.teacher_detect, "stride", [])]
    exponents = [round(math.log2(s)) if s > 1 else None for s in strides]
    if (len(strides) == levels and None not in exponents and len(set(exponents)) == levels
            and all(2 ** e == s for e, s in zip(exponents, strides))):
        return tuple(f"distill/{prefix}_p{e}" for e in exponents)
    return tuple(f"distill/{prefix}_l{i}" for i in range(levels))


def check_choices(method: str, options) -> None:
    """ValueError for an option outside its field's ``choices`` metadata (the same list the flag offers), so the
    command line and ``KDConfig(...)`` reject the same values and each method declares its choices once."""
    for f in dataclasses.fields(options):
        value, choices = getattr(options, f.name), f.metadata.get("choices")
        if choices is not None and value not in choices:
            raise ValueError(f"{method}_{f.name.rstrip('_')} must be one of {tuple(choices)}, got {value!r}")


class Method:
    """Base class: subclasses set the class attributes and implement ``terms``."""

    name: ClassVar[str]
    Options: ClassVar[type]  # frozen dataclass: the method's options and their defaults (flags --NAME-FIELD)
    default_weight: ClassVar[float]  # outer weight when --kd-weight does not give one
    term_names: ClassVar[tuple[str, ...]]
    uses_adapters: ClassVar[bool] = False
    needs_anchors: ClassVar[bool] = False
    uses_outputs: ClassVar[bool] = False  # compares head outputs cell by cell: no --teacher-img (they do not pool)

    def __init__(self, config: "KDConfig", setup: Setup):
        self.config, self.weight = config, config.method_weight(self.name)
        self.options = config.options(self.name)
        self.modules: nn.Module | None = None

    @property
    def uses_teacher_features(self) -> bool:
        """Whether ``terms`` reads the teacher's features (a teacher ensemble has none: distill/ensemble.py)."""
        return True

    def terms(self, student_feats: list[torch.Tensor], teacher_feats: list[torch.Tensor],
              outputs: tuple[list[torch.Tensor], list[torch.Tensor]], targets: torch.Tensor, shared: Shared
              ) -> dict[str, torch.Tensor]:
        """Weighted per-image terms named ``term_names``. feats: (B, C, H, W) per level (teacher's FP32);
        outputs: (student, teacher) raw Detect outputs, (B, na, H, W, no) per head level; targets (N, 6)."""
        raise NotImplementedError
