"""An ensemble of teachers for the output methods: ``train_kd.py --teacher A.pt --teacher-ensemble B.pt C.pt``.

Every member runs on the batch; their raw Detect outputs are averaged in probability space,
``z = logit(mean_i sigmoid(z_i))`` (YOLOv5 decodes every output, x/y/w/h, objectness and classes, through a
sigmoid), and the decoded predictions are averaged, so the methods see one teacher with one head. The members
must share that head (nc, class names, levels, anchors, strides). There is no ensemble of features (members may
differ in width), so only methods that read no teacher feature accept one: OGD, and CILF with its defaults
(output KL, alpha 1); DistillStep refuses the others. The recorders attach to the first member, whose features
size DistillStep's checks.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from distill.teacher import Teacher, head_mismatches, load_teacher

PROBABILITY_EPS = 1e-6  # logit of a mean sigmoid: kept off 0 and 1


class TeacherEnsemble(Teacher):
    """``Teacher`` whose forward is the members' average (see the module doc). ``path`` and ``sha256`` join the
    members' with ' + ', so a resume checks every member."""

    def __init__(self, teachers: list[Teacher]):
        if len(teachers) < 2:
            raise ValueError("a teacher ensemble needs at least two teachers")
        first, *rest = teachers
        super().__init__(first.module, first.dtype, " + ".join(str(t.path) for t in teachers),
                         " + ".join(str(t.sha256) for t in teachers))
        self.members = nn.ModuleList(rest)
        self.paths = [t.path for t in teachers]
        problems = [f"member {i + 2} ({Path(str(t.path)).name}): {p}" for i, t in enumerate(rest)
                    for p in _head_problems(first, t)]
        if problems:
            raise ValueError("teacher ensemble members need one head layout: " + "; ".join(problems))
        self.train(False)

    def forward(self, imgs: torch.Tensor):
        outs = [super().forward(imgs), *(member(imgs) for member in self.members)]
        decoded = torch.stack([out[0] for out in outs]).mean(0)
        raw = [average_logits([out[1][level] for out in outs]) for level in range(len(outs[0][1]))]
        return decoded, raw


def average_logits(logits: list[torch.Tensor]) -> torch.Tensor:
    """logit(mean of the sigmoids): the members' probabilities averaged, back in logit form."""
    probability = torch.stack([z.float().sigmoid() for z in logits]).mean(0)
    return torch.logit(probability, eps=PROBABILITY_EPS)


def _head_problems(first: Teacher, other: Teacher) -> list[str]:
    problems = head_mismatches(first.detect, other.detect)
    names = [getattr(t.module, "names", None) for t in (first, other)]
    if all(names) and [names[0][k] for k in sorted(names[0])] != [names[1][k] for k in sorted(names[1])]:
        problems.append(f"class names {list(names[0].values())} vs {list(names[1].values())}")
    strides = [getattr(t.detect, "stride", None) for t in (first, other)]
    if all(s is not None for s in strides) and not torch.equal(strides[0].float().cpu(), strides[1].float().cpu()):
        problems.append(f"strides {strides[0].tolist()} vs {strides[1].tolist()}")
    return problems


def load_teachers(paths: list[str], device: torch.device | str = "cpu", dtype: torch.dtype | None = None
                  ) -> Teacher:
    """One path: ``load_teacher``; several: each loaded strictly, then a ``TeacherEnsemble``."""
    teachers = [load_teacher(path, device, dtype) for path in paths]
    return teachers[0] if len(teachers) == 1 else TeacherEnsemble(teachers)
