"""KDConfig: every distillation option in one frozen dataclass, built from the methods' options dataclasses.

Each method's defaults live in one place, its options dataclass (distill/methods/<name>.py); KDConfig has one
flat field ``<method>_<option>`` per option (``fgd_lambda`` for FGDOptions.lambda_), generated from them, so a
new method adds its fields here and its flags to train_kd.py without editing either file.
"""
from __future__ import annotations

import dataclasses
import math

from distill.methods import METHODS as REGISTRY
from distill.methods.base import check_choices
from distill.methods.fgd import FGD_PRESETS  # noqa: F401 - re-exported for train_kd.py and older callers

METHODS = tuple(REGISTRY)
DEFAULT_METHODS = ("fgd",)  # train_kd.py's --kd default reads this
DECAYS = ("none", "cosine")  # --kd-decay
RENAMED = {"warmup_iters": "start_iter"}  # old key -> new key, for kd.yaml / checkpoints written before the rename

# Outer weight (lambda) per method when --kd-weight is not given (each Method.default_weight), tuned on the BCCD
# benchmark (issue 10, benchmarks/results/kd_bccd.md: yolov5n from scratch, 60 epochs, against a loss-scaled
# no-teacher control). The papers' values (FGFI and CILF 0.01, FGD's official preset at weight 1) are 2.6x and
# 14-19x YOLOv5's detection loss and cost 3-9 mAP50-95 points there; at these weights no method hurts the control.
DEFAULT_WEIGHTS = {name: cls.default_weight for name, cls in REGISTRY.items()}


def option_fields(method: str) -> list[tuple[str, dataclasses.Field]]:
    """(flat KDConfig name, options field) of every option of ``method``, in declaration order."""
    return [(f"{method}_{f.name.rstrip('_')}", f) for f in dataclasses.fields(REGISTRY[method].Options)]


class _KDConfigBase:
    """Resolved KD options (the generated fields are listed in KDConfig's docstring)."""

    def __post_init__(self):
        methods = tuple(dict.fromkeys(self.methods))  # de-duplicate, keep order
        unknown = [m for m in methods if m not in METHODS]
        if not methods or unknown:
            raise ValueError(f"KD methods must be a non-empty subset of {METHODS}, got {self.methods}")
        object.__setattr__(self, "methods", methods)
        per_method = tuple((str(m), float(w)) for m, w in dict(self.method_weights).items())
        stray = [m for m, _ in per_method if m not in methods]
        if stray:
            raise ValueError(f"KD weight given for {stray}, which are not among the methods {methods}")
        object.__setattr__(self, "method_weights", per_method)
        balance = tuple((str(m), float(r)) for m, r in dict(self.balance).items())
        if any(m not in methods or not r > 0 for m, r in balance):
            raise ValueError(f"KD balance ratios must be > 0 and for the methods {methods}, got {balance}")
        object.__setattr__(self, "balance", balance)
        if self.layers is not None:
            object.__setattr__(self, "layers", tuple(int(i) for i in self.layers))
        if int(self.teacher_scale) != self.teacher_scale or self.teacher_scale < 1:
            raise ValueError(f"teacher_scale must be a whole number >= 1 (--teacher-img = N x --img), "
                             f"got {self.teacher_scale}")
        object.__setattr__(self, "teacher_scale", int(self.teacher_scale))
        if self.adapter_kernel not in (1, 3):
            raise ValueError(f"adapter_kernel (--kd-adapter-kernel) must be 1 or 3, got {self.adapter_kernel}")
        if self.decay not in DECAYS or not 0.0 <= float(self.decay_min) <= 1.0:
            raise ValueError(f"KD decay must be one of {DECAYS} with a floor in [0, 1], "
                             f"got {self.decay!r} {self.decay_min!r}")
        for method in METHODS:  # validate through the options dataclass and keep what it resolved (FGD presets)
            resolved = self.options(method)
            for flat, f in option_fields(method):
                object.__setattr__(self, flat, getattr(resolved, f.name))

    def options(self, method: str):
        """The options dataclass of ``method`` with this config's values."""
        options = REGISTRY[method].Options(**{f.name: getattr(self, flat) for flat, f in option_fields(method)})
        check_choices(method, options)
        return options

    def method_weight(self, method: str) -> float:
        """Outer weight of ``method``: its entry in ``method_weights``, else ``weight``, else the default."""
        per_method = dict(self.method_weights)
        if method in per_method:
            return per_method[method]
        return DEFAULT_WEIGHTS[method] if self.weight is None else self.weight

    def active(self, epoch: int, iteration: int) -> bool:
        """Whether KD is on at this global epoch / optimiser iteration (start and stop schedules)."""
        if iteration < self.start_iter:
            return False
        return self.stop_epoch is None or epoch < self.stop_epoch

    def decay_factor(self, iteration: int, total_iters: int | None) -> float:
        """KD weight factor at this global iteration: 1 with ``decay`` "none"; with "cosine" (YOLOv6) it falls from
        1 at ``start_iter`` to ``decay_min`` at the last iteration ``total_iters - 1`` (half a cosine)."""
        if self.decay == "none":
            return 1.0
        if total_iters is None:
            raise ValueError("KD cosine decay needs the run's length (total_iters)")
        span = total_iters - 1 - self.start_iter
        progress = 1.0 if span <= 0 else min(max((iteration - self.start_iter) / span, 0.0), 1.0)
        return self.decay_min + (1.0 - self.decay_min) * 0.5 * (1.0 + math.cos(math.pi * progress))

    def to_dict(self) -> dict:
        """Plain data (lists, not tuples) for yaml files and checkpoints."""
        out = dataclasses.asdict(self)
        out["methods"] = list(self.methods)
        out["layers"] = None if self.layers is None else list(self.layers)
        out["method_weights"] = {m: w for m, w in self.method_weights}
        out["balance"] = {m: r for m, r in self.balance}
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "KDConfig":
        fields = {f.name for f in dataclasses.fields(cls)}
        data = {RENAMED.get(key, key): value for key, value in data.items()}
        unknown = set(data) - fields
        if unknown:
            raise ValueError(f"unknown KD options: {sorted(unknown)}")
        data["methods"] = tuple(data.get("methods", DEFAULT_METHODS))
        if data.get("layers") is not None:
            data["layers"] = tuple(data["layers"])
        data["method_weights"] = tuple((data.get("method_weights") or {}).items())
        data["balance"] = tuple((data.get("balance") or {}).items())
        return cls(**data)


def _fields() -> list[tuple]:
    common = [("methods", tuple, dataclasses.field(default=DEFAULT_METHODS)),
              ("weight", float | None, dataclasses.field(default=None)),
              ("method_weights", tuple, dataclasses.field(default=())),
              ("balance", tuple, dataclasses.field(default=())),
              ("layers", tuple | None, dataclasses.field(default=None)),
              ("teacher_scale", int, dataclasses.field(default=1)),
              ("adapter_kernel", int, dataclasses.field(default=3))]
    options = [(flat, f.type, dataclasses.field(default=f.default))
               for method in METHODS for flat, f in option_fields(method)]
    schedule = [("anchor_t", float, dataclasses.field(default=4.0)),
                ("start_iter", int, dataclasses.field(default=0)),
                ("stop_epoch", int | None, dataclasses.field(default=None)),
                ("decay", str, dataclasses.field(default="none")),
                ("decay_min", float, dataclasses.field(default=0.0))]
    return common + options + schedule


KDConfig = dataclasses.make_dataclass("KDConfig", _fields(), bases=(_KDConfigBase,), frozen=True,
                                      namespace={"__module__": __name__})
KDConfig.__doc__ = """Resolved KD options; FGD's ``None`` fields are filled from ``fgd_preset`` at construction.

methods: any of the registry's (they add up; default fgd). weight: outer lambda for every method, or None for
the per-method defaults. method_weights: per-method outer lambdas ``(("fgfi", 0.0025), ("fgd", 0.05))`` that
take precedence over ``weight``. balance: ``(("fgd", 0.5),)``, the methods whose weight DistillStep fixes to
R * detection / unweighted term at the end of the loop's warmup (--kd-balance). layers: student/teacher layer indices to distil, or None for the inputs of Detect.
teacher_scale: the teacher sees the batch resized (bilinear) to this many times the student's size, and its
features are average-pooled by it back to the student's grid (--teacher-img; feature methods only).
adapter_kernel: 3 (the FGFI/CILF adapters of the papers) or 1 (--kd-adapter-kernel 1, a 1x1 connector).
``<method>_<option>``: each method's options (distill/methods). anchor_t: YOLOv5's anchor ratio threshold (the
FGFI ``matched`` assignment). start_iter: KD off for global iterations < N (flag --kd-warmup-iters; called
``warmup_iters`` before, a name that clashed with the loop's LR warmup: from_dict still reads it).
stop_epoch: KD off from this epoch on (None = never). decay: "none", or "cosine" (YOLOv6): every KD term times a
factor falling from 1 at start_iter to decay_min at the run's last global iteration (``decay_factor``).
"""
