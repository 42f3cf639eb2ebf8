"""FGD (Yang et al., CVPR 2022): focal (fg/bg), attention and global terms, one FGDLoss block per level."""
from __future__ import annotations

from torch import nn

from distill import losses, masks
from distill.methods.base import Method, Setup


class FGD(Method):
    name = "fgd"
    term_names = ("distill/fgd_fg", "distill/fgd_bg", "distill/fgd_at", "distill/fgd_glb")

    def __init__(self, config, setup: Setup):
        super().__init__(config, setup)
        self.modules = nn.ModuleList(
            losses.FGDLoss(c_s, c_t, config.fgd_temperature, config.fgd_alpha, config.fgd_beta, config.fgd_gamma,
                           config.fgd_lambda)
            for c_s, c_t in zip(setup.student_channels, setup.teacher_channels))

    def terms(self, student_feats, teacher_feats, outputs, targets, shared):
        sums = {}
        for module, student, teacher in zip(self.modules, student_feats, teacher_feats):
            fg_mask, bg_mask = masks.fgd_masks(targets, tuple(teacher.shape[2:]), shared.batch_size)
            for key, value in module(student, teacher, fg_mask, bg_mask).items():
                sums[key] = sums.get(key, 0.0) + value
        return {f"distill/fgd_{key}": self.weight * value for key, value in sums.items()}
