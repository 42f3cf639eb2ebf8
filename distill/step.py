"""DistillStep: the training step of a KD run (the Step protocol of engine/step.py; docs/design.md, "The step contract").

One call = one student forward with the feature recorder active, one teacher forward under
``torch.no_grad()`` (not inference mode: its tensors enter losses saved for backward) on the same batch under
the caller's autocast (``--teacher-img``: the batch resized bilinearly to ``teacher_scale`` x its size, the
teacher's features average-pooled back to the student's grid; no output method then), the detection terms of ``ComputeLoss.components``, and the KD terms, all per image,
summed and multiplied by the batch size once: ``total = (lbox + lobj + lcls + lkd) * bs``.

The KD terms come from the chosen ``distill.methods`` (each its own ``term_names``), run in registry order
whatever the order of ``--kd``; the step owns what they share (recorders, teacher forward, schedule, the shared
FGFI/CILF adapters and masks, diagnostic, plot, state). Terms (their own columns): ``distill/fgfi``;
``distill/kl``, ``distill/mse`` (CILF); ``distill/fgd_fg/_bg/_at/_glb`` (FGD, summed over levels);
``distill/cwd_p3..`` and ``distill/pkd_p3..`` (per level); ``distill/ogd_box/_cls/_obj`` (OGD).
Each is logged *weighted*, i.e. as it enters the total. Outside the KD schedule (``--kd-warmup-iters``,
``--kd-stop-epoch``, keyed on global iteration/epoch) the teacher is not run and the terms are logged as 0.
``--kd-decay cosine`` multiplies every KD term by ``KDConfig.decay_factor`` (1 at the KD start to ``decay_min`` at
the last global iteration, ``total_iters - 1``), applied here, after the methods' own weights.
``--kd-balance`` (distill/balance.py): the step feeds ``Balance`` the KD iterations of the warmup's last 20, and
at its last one the balanced methods' ``method.weight`` is fixed (then in ``state_dict()["balance"]``).

Loss-magnitude diagnostic: at the first iteration that runs the teacher and at the end of the loop's warmup
(``warmup_iters``, the loop's real warmup length from ``StepContext.warmup_iters``; None: first iteration only),
the main process logs every weighted KD term next to the detection terms, with a warning when the KD sum is more than
``MAGNITUDE_WARN`` times the detection sum or less than 1/``MAGNITUDE_WARN`` of it.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import torch
import torch.distributed as torch_dist
import torch.nn.functional as F
from torch import nn

from distill import adapters, masks
from distill.config import KDConfig
from distill.recorder import FeatureRecorder, unwrap
from distill.methods import METHODS, Setup, Shared
from distill.balance import Balance
from distill.teacher import Teacher, check_compatible

LOGGER = logging.getLogger(__name__)
MAGNITUDE_WARN = 10.0  # KD sum / detection sum beyond this (or below its inverse) is flagged

if TYPE_CHECKING:  # type hints only
    from models.yolo import Model
    from utils.loss import ComputeLoss


class DistillStep:
    """Step for ``train.py``'s loop. ``modules`` (adapters, FGD blocks) must be in the optimizer, the
    checkpoint (``checkpoint_key``) and the resume path, and under DDP be broadcast once and have their
    gradients averaged over ranks (DDP wraps only the student); the loop does all this for ``step.modules``.

    Args:
        student: the bare student (before DDP wrapping); hooks go on it.
        teacher: a ``distill.teacher.Teacher`` (load_teacher) on the same device; a bare model is wrapped in one
            (FP32 weights, the caller's autocast). Its path and sha256 are recorded in ``state_dict()``.
        compute_loss: ``utils.loss.ComputeLoss`` of the student.
        config: resolved KD options.
        imgsz: training image size, for the dummy forward that sizes adapters and checks strides.
        plot_path: where to save kd_masks.jpg from the first batch that runs the teacher (main process only;
            the recorded features are reused, no extra forward), or None.
        warmup_iters: the loop's warmup length, where the loss-magnitude diagnostic is logged a second time
            (train_kd.py passes ``StepContext.warmup_iters``; None: only the first time, the first iteration that
            runs the teacher).
        total_iters: the run's length in global iterations (``epochs * batches_per_epoch``), for ``--kd-decay``.
        balance_path: where the main process writes the weights ``--kd-balance`` chose (kd_balance.yaml), or None.
    """

    checkpoint_key = "distill"

    def __init__(self, student: "Model", teacher: Teacher | nn.Module, compute_loss: "ComputeLoss",
                 config: KDConfig, imgsz: int, plot_path: str | None = None, warmup_iters: int | None = None,
                 total_iters: int | None = None, balance_path: str | None = None):
        student = unwrap(student)
        teacher = teacher if isinstance(teacher, Teacher) else Teacher(teacher)
        self.teacher, self.compute_loss, self.config = teacher, compute_loss, config
        self.total_iters = None if total_iters is None else int(total_iters)
        config.decay_factor(0, self.total_iters)  # cosine without a run length fails here, not mid-run
        self.teacher_path, self.teacher_sha256 = teacher.path, teacher.sha256
        self.student_recorder = FeatureRecorder(student, layers=config.layers)
        self.teacher_recorder = FeatureRecorder(teacher.module, layers=config.layers, detach=True)
        classes = [cls for name, cls in METHODS.items() if name in config.methods]  # registry order = term order
        self.scale = config.teacher_scale
        if self.scale != 1 and any(cls.uses_outputs for cls in classes):
            raise ValueError(f"--teacher-img at {self.scale}x --img pools the teacher's features to the student's "
                             f"grid; {[cls.name for cls in classes if cls.uses_outputs]} compare head outputs cell by "
                             "cell, which do not pool (use fgfi, fgd, cwd or pkd)")
        student_shapes = adapters.probe_features(student, self.student_recorder, imgsz)
        teacher_shapes = [(c, h // self.scale, w // self.scale) for c, h, w in
                          adapters.probe_features(teacher, self.teacher_recorder, imgsz * self.scale)]
        check_compatible(student_shapes, teacher_shapes, imgsz)
        try:
            self.anchors = masks.level_anchors(teacher.detect, [imgsz / shape[1] for shape in teacher_shapes])
        except ValueError:
            if any(cls.needs_anchors for cls in classes):
                raise
            self.anchors = None  # FGD alone needs no anchors
        main_process = not torch_dist.is_initialized() or torch_dist.get_rank() == 0
        self.plot_path = plot_path if main_process else None
        self.diagnostic_iter = None if warmup_iters is None else int(warmup_iters)
        self._diagnose_first = main_process  # log at the first KD iteration, then at diagnostic_iter
        self._diagnose_at = self.diagnostic_iter if main_process else None
        setup = Setup([shape[0] for shape in student_shapes], [shape[0] for shape in teacher_shapes],
                      student.detect, teacher.detect, getattr(student, "names", None),
                      getattr(teacher.module, "names", None))
        self.modules = nn.ModuleDict()
        if any(cls.uses_adapters for cls in classes):  # built first: the torch RNG order of the checkpoints
            self.modules["adapters"] = adapters.build_adapters(setup.student_channels, setup.teacher_channels,
                                                               config.adapter_kernel)
        self.methods = [cls(config, setup) for cls in classes]
        feature_methods = [m.name for m in self.methods if m.uses_teacher_features]
        if getattr(teacher, "members", None) is not None and feature_methods:
            raise ValueError(f"a teacher ensemble (--teacher-ensemble) averages head outputs and has no features: "
                             f"{feature_methods} read teacher features (use ogd, or cilf with its defaults)")
        for method in self.methods:
            if method.modules is not None:
                self.modules[method.name] = method.modules
        self.modules.to(next(student.parameters()).device)
        self.term_names = tuple(name for method in self.methods for name in method.term_names)
        self.balance = Balance(self.methods, config, warmup_iters, next(student.parameters()).device,
                               balance_path if main_process else None) if config.balance else None

    def __call__(self, model: nn.Module, imgs: torch.Tensor, targets: torch.Tensor, *, epoch: int,
                 iteration: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """imgs (B, 3, H, W) float 0-1, targets (N, 6) -> (total * B to back-propagate, detached terms)."""
        try:
            with self.student_recorder:
                preds = model(imgs)  # the one student forward (through DDP if wrapped)
            terms = self.compute_loss.components(preds, targets)
            if self.config.active(epoch, iteration):
                terms.update(self._kd(imgs, preds, targets, terms, iteration))
                if self.plot_path:
                    self._plot(imgs, targets)
                if self._diagnose_first or iteration == self._diagnose_at:
                    self._diagnose(terms, epoch, iteration)
            else:
                zero = torch.zeros((), device=imgs.device)
                terms.update({name: zero for name in self.term_names})
            if self.balance is not None and not self.balance.done and iteration >= self.balance.end - 1:
                self.balance.finish(iteration)  # on every rank at the same iteration: the sums are all-reduced
        finally:  # drop references to this batch's graph and activations
            self.student_recorder.clear()
            self.teacher_recorder.clear()
        total = sum(terms.values()) * imgs.shape[0]
        return total, {name: value.detach() for name, value in terms.items()}

    def _kd(self, imgs: torch.Tensor, preds: list[torch.Tensor], targets: torch.Tensor,
            detection: dict[str, torch.Tensor], iteration: int) -> dict[str, torch.Tensor]:
        """The teacher forward and the KD terms of one batch, with the decay factor; feeds the calibration."""
        teacher_imgs = imgs if self.scale == 1 else F.interpolate(imgs, scale_factor=self.scale, mode="bilinear",
                                                                  align_corners=False)
        with torch.no_grad(), self.teacher_recorder:
            teacher_out = self.teacher(teacher_imgs)
        teacher_raw = teacher_out[1] if isinstance(teacher_out, tuple) else teacher_out
        # KD losses in float32: squared feature differences and sums overflow easily in fp16
        with torch.autocast(device_type=imgs.device.type, enabled=False):
            kd = self.kd_terms(preds, teacher_raw, self.student_recorder.features, self.teacher_features(), targets)
            if self.balance is not None and not self.balance.done:
                self.balance.add(detection, kd, iteration)  # before the decay: its factor is no weight of a term
            if self.config.decay != "none":  # the schedule's factor, on every KD term
                factor = self.config.decay_factor(iteration, self.total_iters)
                kd = {name: value * factor for name, value in kd.items()}
        return kd

    def _diagnose(self, terms: dict[str, torch.Tensor], epoch: int, iteration: int) -> None:
        """Log the weighted per-image KD terms beside the detection terms (main process; see the module doc)."""
        first, self._diagnose_first = self._diagnose_first, False
        if self.diagnostic_iter is None or iteration >= self.diagnostic_iter:
            self._diagnose_at = None
        values = {name: float(value.detach()) for name, value in terms.items()}
        det = {k: v for k, v in values.items() if not k.startswith("distill/")}
        kd = {k: v for k, v in values.items() if k.startswith("distill/")}
        det_sum, kd_sum = sum(det.values()), sum(kd.values())
        ratio = kd_sum / det_sum if det_sum > 0 else float("inf")
        when = "first KD iteration" if first and iteration != self.diagnostic_iter else "end of warmup"
        fmt = lambda d: " ".join(f"{k.split('/')[-1]} {v:.4g}" for k, v in d.items())  # noqa: E731
        LOGGER.info(f"KD loss magnitudes at iteration {iteration} (epoch {epoch}, {when}), weighted, per image: "
                    f"detection {fmt(det)} (sum {det_sum:.4g}) | KD {fmt(kd)} (sum {kd_sum:.4g}, "
                    f"{ratio:.3g}x detection)")
        if not 1 / MAGNITUDE_WARN <= ratio <= MAGNITUDE_WARN:
            LOGGER.warning(f"KD terms are {ratio:.3g}x the detection loss at iteration {iteration}: the KD weight "
                           f"looks mis-scaled (--kd-weight, FGD --fgd-alpha/beta/gamma/lambda)")

    def _plot(self, imgs: torch.Tensor, targets: torch.Tensor) -> None:
        from distill.visualize import plot_kd_masks  # matplotlib only when plotting

        config, path, self.plot_path = self.config, self.plot_path, None
        plot_kd_masks(imgs, targets, self.student_recorder.features, self.teacher_features(),
                      self.anchors, path, config.fgfi_psi, config.fgd_temperature)

    def teacher_features(self) -> list[torch.Tensor]:
        """The teacher's recorded features on the student's grid: average-pooled by ``teacher_scale`` (each student
        cell gets the mean of the scale x scale teacher cells that cover the same image region)."""
        feats = self.teacher_recorder.features
        return list(feats) if self.scale == 1 else [F.avg_pool2d(feat, self.scale) for feat in feats]

    def kd_terms(self, student_outputs: list[torch.Tensor], teacher_outputs: list[torch.Tensor],
                 student_feats: list[torch.Tensor], teacher_feats: list[torch.Tensor], targets: torch.Tensor
                 ) -> dict[str, torch.Tensor]:
        """Weighted per-image KD terms. Outputs: (B, na, H, W, no) per head level; feats (B, C, H, W) per level."""
        teacher_feats = [feat.float() for feat in teacher_feats]
        targets = targets.to(teacher_feats[0].device)
        shared = Shared(self.config, self.modules["adapters"] if "adapters" in self.modules else None, self.anchors,
                        student_feats, teacher_feats, targets)
        out = {}
        for method in self.methods:
            out.update(method.terms(student_feats, teacher_feats, (student_outputs, teacher_outputs), targets, shared))
        return out

    def state_dict(self) -> dict:
        """Adapters/FGD weights plus the options and teacher identity they were trained with (plain data)."""
        state = {"modules": self.modules.state_dict(), "config": self.config.to_dict(),
                 "teacher": {"path": self.teacher_path, "sha256": self.teacher_sha256}}
        if self.balance is not None:  # only with --kd-balance: the state of other runs is as before
            state["balance"] = self.balance.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        saved = KDConfig.from_dict(state["config"])
        if saved.methods != self.config.methods or saved.layers != self.config.layers:
            raise ValueError(f"checkpoint KD state is for methods {saved.methods} layers {saved.layers}, "
                             f"this run uses {self.config.methods} layers {self.config.layers}")
        saved_sha = (state.get("teacher") or {}).get("sha256")
        if saved_sha and self.teacher_sha256 and saved_sha != self.teacher_sha256:
            raise ValueError(f"the teacher file changed since this run started (sha256 {saved_sha[:12]}... in the "
                             f"checkpoint, {self.teacher_sha256[:12]}... now): resume with the original teacher")
        self.modules.load_state_dict(state["modules"], strict=True)
        if self.balance is not None and state.get("balance"):  # older checkpoints have none: calibrate as usual
            self.balance.load_state_dict(state["balance"])

    def close(self) -> None:
        """Remove the recorders' hooks from student and teacher."""
        self.student_recorder.close()
        self.teacher_recorder.close()
