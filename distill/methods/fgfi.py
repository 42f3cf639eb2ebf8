"""FGFI (Wang et al., CVPR 2019): masked imitation of the teacher's features by the adapted student's."""
from __future__ import annotations

from distill import losses
from distill.methods.base import Method


class FGFI(Method):
    name = "fgfi"
    term_names = ("distill/fgfi",)
    uses_adapters = needs_anchors = True

    def terms(self, student_feats, teacher_feats, outputs, targets, shared):
        return {"distill/fgfi": self.weight * losses.fgfi_loss(shared.adapted, teacher_feats,
                                                               shared.imitation_masks)}
