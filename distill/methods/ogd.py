"""OGD: objectness-gated output distillation (the output distillation of PaddleDetection's YOLOv3 recipe,
spec section 12), on the raw Detect outputs (B, na, H, W, 5 + nc): x, y, w, h, obj, classes per anchor.

Per anchor a and cell of every head level, g = sigmoid(teacher obj logit) gates the box and class terms:

    box = sum g * [kl(x) + kl(y) + kl(w) + kl(h)] / sum g        (``--ogd-wh l1``: |dw| + |dh| on the logits)
    cls = sum g * mean_c kl(c) / sum g
    obj = sum kl(obj) / (number of anchors x cells)

the sums running over the batch, the anchors, the cells and all levels together. kl(z) = KL(Bern(sigmoid(z_t)) ||
Bern(sigmoid(z_s))) from the student and teacher logits: the binary cross-entropy with the teacher's sigmoid as
soft target minus its entropy H(sigmoid(z_t)). The entropy does not depend on the student, so the gradient is the
BCE's (sigmoid(z_s) - sigmoid(z_t) per logit); subtracting it makes each term 0 when the student matches the
teacher, so the logged columns and the loss-magnitude diagnostic show the imitation gap, not a constant offset that
would swamp the weight choice (at equality, BCE alone is the teacher's entropy, up to 0.69 per logit).

w/h: YOLOv5 decodes wh = (2 sigmoid(t))^2 anchor, so unlike YOLOv3 (wh = exp(t) anchor, where the spec's L1 on the
logits is an L1 on log-size) the box size is a function of sigmoid(t), and the default treats w/h like x/y: KL on
the sigmoids. Its gradient sigmoid(t_s) - sigmoid(t_t) follows the decoded size and fades where the sigmoid
saturates (logits 6 and 8 are 3.99 and 4.00 anchors), where an L1 on the logits would push with full force for no
change in the box. ``--ogd-wh l1`` keeps the spec's YOLOv3 form.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from distill import losses
from distill.methods.base import Method, Setup
from distill.teacher import head_mismatches


@dataclass(frozen=True)
class OGDOptions:
    wh: str = field(default="kl", metadata={
        "choices": ("kl", "l1"),
        "help": "OGD w/h term: KL on the sigmoids like x/y (default; YOLOv5 decodes w/h through a sigmoid) or L1 "
                "on the logits (the YOLOv3 recipe)"})


def ogd_losses(student_outputs: list[torch.Tensor], teacher_outputs: list[torch.Tensor], wh: str = "kl"
               ) -> dict[str, torch.Tensor]:
    """Unweighted OGD terms ``box``, ``cls``, ``obj`` (module docstring), FP32 scalars.

    Per level: raw Detect outputs (B, na, H, W, 5 + nc) of student and teacher (logits); the teacher is detached.
    """
    box = cls = obj = gate_sum = 0.0
    cells = 0
    for student, teacher in zip(student_outputs, teacher_outputs):
        student, teacher = student.float(), teacher.detach().float()
        gate = torch.sigmoid(teacher[..., 4])  # (B, na, H, W)
        if wh == "kl":
            per_box = losses.bernoulli_kl(student[..., :4], teacher[..., :4]).sum(-1)
        else:
            per_box = (losses.bernoulli_kl(student[..., :2], teacher[..., :2]).sum(-1)
                       + (student[..., 2:4] - teacher[..., 2:4]).abs().sum(-1))
        per_cls = losses.bernoulli_kl(student[..., 5:], teacher[..., 5:]).mean(-1)
        box = box + (gate * per_box).sum()
        cls = cls + (gate * per_cls).sum()
        obj = obj + losses.bernoulli_kl(student[..., 4], teacher[..., 4]).sum()
        gate_sum = gate_sum + gate.sum()
        cells += gate.numel()
    norm = gate_sum.clamp(min=1e-9)  # sigmoids are positive; the clamp only guards empty or underflowing gates
    return {"box": box / norm, "cls": cls / norm, "obj": obj / max(cells, 1)}


def _class_list_problem(student_names: dict | None, teacher_names: dict | None) -> str | None:
    if not student_names or not teacher_names:
        return None
    student_list = [student_names[k] for k in sorted(student_names)]
    teacher_list = [teacher_names[k] for k in sorted(teacher_names)]
    if student_list == teacher_list:
        return None
    return f"class names {student_list} vs {teacher_list}"


def check_heads(setup: Setup) -> None:
    """OGD imitates the teacher's outputs anchor by anchor and class by class: nc, class names (in index order),
    levels, anchors per level, anchor shapes and head strides must agree; else a ValueError naming what differs."""
    student, teacher = setup.student_detect, setup.teacher_detect
    problems = head_mismatches(student, teacher)
    if student.nc == teacher.nc:  # names are only worth comparing when the counts agree
        names = _class_list_problem(setup.student_names, setup.teacher_names)
        problems += [names] if names else []
    strides = [getattr(head, "stride", None) for head in (student, teacher)]
    if all(stride is not None for stride in strides) and strides[0].numel() == strides[1].numel():
        if not torch.equal(strides[0].float().cpu(), strides[1].float().cpu()):
            problems.append(f"head strides {strides[0].tolist()} vs {strides[1].tolist()}")
    if problems:
        raise ValueError("--kd ogd needs teacher and student heads to agree (student vs teacher: "
                         + "; ".join(problems) + "): use a teacher trained on the same classes with the same anchors "
                         "(AutoAnchor may have re-fitted the student's anchors: --noautoanchor keeps the yaml's)")


class OGD(Method):
    name = "ogd"
    Options = OGDOptions
    # BCCD (benchmarks/same_results.py settings: yolov5n from scratch, the shared yolov5s teacher, 96 px, batch 8):
    # at weight 1 the KD sum is 4.46x the detection loss at iteration 0; at 0.1 it is 0.45x there and 0.53x at the
    # end of warmup (iteration 100), next to FGD's default (0.48x at iteration 0)
    default_weight = 0.1
    uses_outputs = True
    term_names = ("distill/ogd_box", "distill/ogd_cls", "distill/ogd_obj")

    @property
    def uses_teacher_features(self) -> bool:
        return False

    def __init__(self, config, setup: Setup):
        super().__init__(config, setup)
        check_heads(setup)

    def terms(self, student_feats, teacher_feats, outputs, targets, shared):
        student_outputs, teacher_outputs = outputs
        values = ogd_losses(student_outputs, teacher_outputs, self.options.wh)
        return {f"distill/ogd_{key}": self.weight * value for key, value in values.items()}
