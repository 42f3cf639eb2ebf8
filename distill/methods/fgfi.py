"""FGFI (Wang et al., CVPR 2019): masked imitation of the teacher's features by the adapted student's."""
from __future__ import annotations

from dataclasses import dataclass, field

from distill import losses
from distill.methods.base import Method


@dataclass(frozen=True)
class FGFIOptions:
    """The FGFI imitation masks, which CILF reads too (flags --fgfi-psi, --fgfi-assign)."""

    psi: float = field(default=0.5, metadata={"help": "FGFI mask threshold factor psi", "evolve": (1, 0.1, 0.9)})
    assign: str = field(default="all", metadata={
        "choices": ("all", "matched"),
        "help": "FGFI GTs per level: all, or only those YOLOv5's assigner matches to the level"})


class FGFI(Method):
    name = "fgfi"
    Options = FGFIOptions
    default_weight = 0.001
    term_names = ("distill/fgfi",)
    uses_adapters = needs_anchors = True

    def terms(self, student_feats, teacher_feats, outputs, targets, shared):
        return {"distill/fgfi": self.weight * losses.fgfi_loss(shared.adapted, teacher_feats,
                                                               shared.imitation_masks)}
