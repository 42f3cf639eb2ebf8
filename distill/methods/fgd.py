"""FGD (Yang et al., CVPR 2022): focal (fg/bg), attention and global terms, one FGDLoss block per level."""
from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from distill import losses, masks
from distill.methods.base import Method, Setup

# (temperature, alpha, beta, gamma, lambda) from the official FGD configs (spec section 6)
FGD_PRESETS = {
    "official": (0.5, 1e-3, 5e-4, 5e-4, 5e-6),  # RetinaNet/GFL one-stage configs
    "yolox": (0.5, 2e-3, 1e-3, 1e-3, 1e-5),  # YOLOX-L -> M
}
_PRESET_FIELDS = ("temperature", "alpha", "beta", "gamma", "lambda_")


@dataclass(frozen=True)
class FGDOptions:
    """``None`` fields are filled from ``preset`` at construction (``lambda_`` is flag --fgd-lambda)."""

    preset: str = field(default="official", metadata={
        "choices": tuple(FGD_PRESETS), "help": "FGD temperature/alpha/beta/gamma/lambda preset; the flags below "
                                               "override it"})
    temperature: float | None = field(default=None, metadata={"type": float, "help": "FGD attention temperature",
                                                           "evolve": (1, 0.1, 2.0)})
    alpha: float | None = field(default=None, metadata={"type": float, "help": "FGD foreground weight",
                                                     "evolve": (1, 1e-5, 1e-2)})
    beta: float | None = field(default=None, metadata={"type": float, "help": "FGD background weight",
                                                    "evolve": (1, 1e-6, 1e-2)})
    gamma: float | None = field(default=None, metadata={"type": float, "help": "FGD attention weight",
                                                     "evolve": (1, 1e-6, 1e-2)})
    lambda_: float | None = field(default=None, metadata={"type": float, "help": "FGD global (GcBlock) weight",
                                                       "evolve": (1, 1e-8, 1e-4)})

    def __post_init__(self):
        if self.preset not in FGD_PRESETS:
            raise ValueError(f"fgd_preset must be one of {tuple(FGD_PRESETS)}, got {self.preset!r}")
        for name, value in zip(_PRESET_FIELDS, FGD_PRESETS[self.preset]):
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)
        if self.temperature <= 0:
            raise ValueError("temperatures must be positive")


class FGD(Method):
    name = "fgd"
    Options = FGDOptions
    default_weight = 0.03  # multiplies the preset's alpha..lambda: the official preset x0.03
    term_names = ("distill/fgd_fg", "distill/fgd_bg", "distill/fgd_at", "distill/fgd_glb")

    def __init__(self, config, setup: Setup):
        super().__init__(config, setup)
        self.modules = nn.ModuleList(
            losses.FGDLoss(c_s, c_t, self.options.temperature, self.options.alpha, self.options.beta,
                           self.options.gamma, self.options.lambda_)
            for c_s, c_t in zip(setup.student_channels, setup.teacher_channels))

    def terms(self, student_feats, teacher_feats, outputs, targets, shared):
        sums = {}
        for module, student, teacher in zip(self.modules, student_feats, teacher_feats):
            fg_mask, bg_mask = masks.fgd_masks(targets, tuple(teacher.shape[2:]), shared.batch_size)
            for key, value in module(student, teacher, fg_mask, bg_mask).items():
                sums[key] = sums.get(key, 0.0) + value
        return {f"distill/fgd_{key}": self.weight * value for key, value in sums.items()}
