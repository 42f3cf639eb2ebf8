"""--kd-balance: fix each balanced method's outer weight from the loss magnitudes at the end of warmup.

Over the last ``BALANCE_ITERS`` global iterations of the loop's warmup (all of it when shorter; only those that run
KD), ``Balance.add`` sums the per-image detection loss (the ``task/`` terms) and each balanced method's *unweighted*
term sum (its weighted terms divided by ``method.weight``, the default or given weight the terms run with during
calibration). At the last window iteration (``end - 1``; on resume past it, the first iteration) ``finish``
all-reduces the sums over ranks (every rank picks the same weights) and sets ``method.weight = R * det / term``,
fixed from then on. A method whose term was zero keeps its weight, with a warning. The chosen weights go to the
log, to ``<save_dir>/kd_balance.yaml`` (main process) and to the checkpoint (``state_dict``: a resume keeps them and
does not calibrate again).
"""
from __future__ import annotations

import logging
import math

import torch
import torch.distributed as torch_dist
import yaml

from utils import atomic

LOGGER = logging.getLogger(__name__)
BALANCE_ITERS = 20  # K: the calibration window, the last K iterations of warmup


class Balance:
    """Calibration state of the balanced methods (``config.balance``) of one DistillStep.

    Args:
        methods: the step's methods; those named in ``config.balance`` are balanced.
        config: the KDConfig (``balance``: method -> R).
        warmup_iters: the loop's warmup length in global iterations (StepContext.warmup_iters).
        device: where the sums live (the student's device: NCCL reduces device tensors).
        path: kd_balance.yaml to write (main process), or None.
    """

    def __init__(self, methods: list, config, warmup_iters: int | None, device: torch.device, path=None):
        if warmup_iters is None:
            raise ValueError("--kd-balance needs the loop's warmup length (warmup_iters)")
        self.ratios = dict(config.balance)
        self.methods = [m for m in methods if m.name in self.ratios]
        self.end = int(warmup_iters)
        self.start = max(self.end - BALANCE_ITERS, 0)
        self.device, self.path = device, path
        self.sums: torch.Tensor | None = None  # [samples, detection, term of each balanced method]
        self.done, self.weights = False, {}
        self.main = not torch_dist.is_initialized() or torch_dist.get_rank() == 0

    def add(self, detection: dict[str, torch.Tensor], kd: dict[str, torch.Tensor], iteration: int) -> None:
        """Add one KD iteration's per-image detection and unweighted method terms, inside the window."""
        if not self.start <= iteration < self.end:
            return
        det = sum(value.detach().float() for name, value in detection.items() if not name.startswith("distill/"))
        terms = [sum(kd[name].detach().float() for name in m.term_names) / m.weight if m.weight
                 else torch.zeros((), device=self.device) for m in self.methods]
        sample = torch.stack([torch.ones((), device=self.device), det.to(self.device), *terms])
        self.sums = sample if self.sums is None else self.sums + sample

    def finish(self, iteration: int) -> None:
        """Fix the balanced weights from the window's means (all ranks together), log and record them."""
        sums = self.sums if self.sums is not None else torch.zeros(len(self.methods) + 2, device=self.device)
        if torch_dist.is_initialized():
            sums = sums.clone()
            torch_dist.all_reduce(sums)  # sums of sums: the ratio of means over all ranks' samples
        samples, det, *terms = sums.tolist()
        kept = []
        for method, term in zip(self.methods, terms):
            ratio = self.ratios[method.name]
            if samples > 0 and det > 0 and term > 0 and math.isfinite(det / term):
                method.weight = ratio * det / term
            else:
                kept.append(method.name)
                self._log(logging.WARNING, f"--kd-balance {method.name}: its term was zero (or not computed: KD off) "
                                           f"during calibration (iterations {self.start}-{self.end - 1}), it keeps weight "
                                           f"{method.weight:.4g}")
            self.weights[method.name] = float(method.weight)
        self.done, self.sums = True, None
        means = {m.name: t / samples if samples else 0.0 for m, t in zip(self.methods, terms)}
        det_mean = det / samples if samples else 0.0
        self._log(logging.INFO, f"--kd-balance at iteration {iteration} over {int(samples)} samples: detection "
                                f"{det_mean:.4g} per image; chosen weights "
                                + ", ".join(f"{m} {w:.4g} (unweighted {means[m]:.4g}, ratio {self.ratios[m]:g})"
                                            for m, w in self.weights.items()))
        if self.path is not None:
            record = {"weights": dict(self.weights), "ratios": dict(self.ratios), "kept": kept,
                      "detection": det_mean, "unweighted": means, "iterations": [self.start, self.end - 1],
                      "samples": int(samples)}
            atomic.write_text(self.path, yaml.safe_dump(record, sort_keys=False))

    def _log(self, level: int, message: str) -> None:
        if self.main:
            LOGGER.log(level, message)

    def state_dict(self) -> dict:
        """Chosen weights; during the calibration window also its running sums (an exact resume inside it)."""
        state = {"done": self.done, "weights": dict(self.weights)}
        if not self.done and self.sums is not None:
            state["sums"] = self.sums.detach().cpu().clone()
        return state

    def load_state_dict(self, state: dict) -> None:
        """Restore chosen weights: a resume after calibration keeps them and does not calibrate again."""
        self.done, self.weights = bool(state.get("done")), dict(state.get("weights") or {})
        if not self.done and state.get("sums") is not None:
            self.sums = state["sums"].to(self.device)
        for method in self.methods:
            if method.name in self.weights:
                method.weight = float(self.weights[method.name])
