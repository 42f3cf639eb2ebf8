"""KDConfig: every distillation option in one frozen dataclass (the only place KD defaults live)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

METHODS = ("fgfi", "cilf", "fgd")
DEFAULT_METHODS = ("fgd",)  # train_kd.py's --kd default reads this
RENAMED = {"warmup_iters": "start_iter"}  # old key -> new key, for kd.yaml / checkpoints written before the rename

# (temperature, alpha, beta, gamma, lambda) from the official FGD configs (spec section 6)
FGD_PRESETS = {
    "official": (0.5, 1e-3, 5e-4, 5e-4, 5e-6),  # RetinaNet/GFL one-stage configs
    "yolox": (0.5, 2e-3, 1e-3, 1e-3, 1e-5),  # YOLOX-L -> M
}

# Outer weight (lambda) per method when --kd-weight is not given, tuned on the BCCD benchmark (issue 10,
# benchmarks/results/kd_bccd.md: yolov5n from scratch, 60 epochs, against a loss-scaled no-teacher control). The
# papers' values (FGFI and CILF 0.01, FGD's official preset at weight 1) are 2.6x and 14-19x YOLOv5's detection
# loss and cost 3-9 mAP50-95 points there; at these weights no method hurts the control.
# FGD's weight multiplies its own alpha..lambda, so 0.03 is the official preset x0.03.
DEFAULT_WEIGHTS = {"fgfi": 0.001, "cilf": 0.03, "fgd": 0.03}


@dataclass(frozen=True)
class KDConfig:
    """Resolved KD options. ``None`` FGD fields are filled from ``fgd_preset`` at construction.

    methods: any of fgfi, cilf, fgd (they add up). weight: outer lambda for every method, or None for the
    per-method defaults. method_weights: per-method outer lambdas ``(("fgfi", 0.0025), ("fgd", 0.05))`` that
    take precedence over ``weight``. layers: student/teacher layer indices to distil, or None for the inputs of Detect.
    start_iter: KD off for global iterations < N (flag --kd-warmup-iters; called ``warmup_iters`` before, a name
    that clashed with the loop's LR warmup: from_dict still reads it). stop_epoch: KD off from this epoch on (None = never).
    anchor_t: YOLOv5's anchor ratio threshold, used by ``fgfi_assign='matched'``.
    """

    methods: tuple[str, ...] = DEFAULT_METHODS
    weight: float | None = None
    method_weights: tuple[tuple[str, float], ...] = ()
    layers: tuple[int, ...] | None = None
    fgfi_psi: float = 0.5
    fgfi_assign: str = "all"
    anchor_t: float = 4.0
    cilf_alpha: float = 1.0  # output KL only: the feature-MSE half hurt like FGFI (benchmark above)
    cilf_temperature: float = 3.0
    cilf_kl: str = "outputs"
    fgd_preset: str = "official"
    fgd_temperature: float | None = None
    fgd_alpha: float | None = None
    fgd_beta: float | None = None
    fgd_gamma: float | None = None
    fgd_lambda: float | None = None
    start_iter: int = 0
    stop_epoch: int | None = None

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
        if self.layers is not None:
            object.__setattr__(self, "layers", tuple(int(i) for i in self.layers))
        if self.fgfi_assign not in ("all", "matched"):
            raise ValueError(f"fgfi_assign must be 'all' or 'matched', got {self.fgfi_assign!r}")
        if self.cilf_kl not in ("outputs", "features"):
            raise ValueError(f"cilf_kl must be 'outputs' or 'features', got {self.cilf_kl!r}")
        if not 0.0 <= self.cilf_alpha <= 1.0:
            raise ValueError(f"cilf_alpha must lie in [0, 1], got {self.cilf_alpha}")
        if self.fgd_preset not in FGD_PRESETS:
            raise ValueError(f"fgd_preset must be one of {tuple(FGD_PRESETS)}, got {self.fgd_preset!r}")
        names = ("fgd_temperature", "fgd_alpha", "fgd_beta", "fgd_gamma", "fgd_lambda")
        for name, value in zip(names, FGD_PRESETS[self.fgd_preset]):
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)
        if self.cilf_temperature <= 0 or self.fgd_temperature <= 0:
            raise ValueError("temperatures must be positive")

    def method_weight(self, method: str) -> float:
        """Outer weight of ``method``: its entry in ``method_weights``, else ``weight``, else the default."""
        per_method = dict(self.method_weights)
        if method in per_method:
            return per_method[method]
        return DEFAULT_WEIGHTS[method] if self.weight is None else self.weight

    def active(self, epoch: int, iteration: int) -> bool:
        """Whether KD is on at this global epoch / optimiser iteration (warmup and stop schedules)."""
        if iteration < self.start_iter:
            return False
        return self.stop_epoch is None or epoch < self.stop_epoch

    def to_dict(self) -> dict:
        """Plain data (lists, not tuples) for yaml files and checkpoints."""
        out = dataclasses.asdict(self)
        out["methods"] = list(self.methods)
        out["layers"] = None if self.layers is None else list(self.layers)
        out["method_weights"] = {m: w for m, w in self.method_weights}
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
        return cls(**data)
