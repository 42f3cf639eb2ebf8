"""Mixed precision: which autocast dtype a run uses, and why.

CUDA keeps upstream YOLOv5's AMP: FP16 autocast with a GradScaler, on by default (``--amp-dtype bf16`` picks
bf16 without a scaler where the GPU supports it). On the CPU, bf16 autocast is used only when asked for
(``--amp``; FP32 stays the CPU default until the accuracy comparison in docs/bf16.md says otherwise) and only on
a processor with native bf16 (``avx512_bf16`` or ``amx_bf16``, ``bf16`` on aarch64): elsewhere bf16 is emulated,
slower than FP32, so the run stays in FP32 and says so. bf16 has FP32's exponent range, hence no GradScaler.

Weights, optimizer state, EMA, losses, metrics and checkpoints stay FP32 whatever the autocast dtype.
"""
from __future__ import annotations

import contextlib
import functools
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

LOGGER = logging.getLogger(__name__)
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
NAMES = {v: k for k, v in DTYPES.items()}
CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16", "bf16")  # x86 AMX, x86 AVX512-BF16, aarch64 BF16


@dataclass(frozen=True)
class Precision:
    """The resolved training/inference precision. ``dtype`` is the autocast dtype (float32 = autocast off)."""

    device_type: str
    dtype: torch.dtype = torch.float32
    reason: str = ""

    @property
    def enabled(self) -> bool:
        return self.dtype != torch.float32

    @property
    def name(self) -> str:
        return NAMES[self.dtype]

    @property
    def use_scaler(self) -> bool:
        """Only FP16 needs loss scaling (its exponent range underflows small gradients)."""
        return self.dtype == torch.float16

    def autocast(self):
        """The autocast context for forward + loss (an explicit off-switch when FP32, so outer autocasts
        do not leak in)."""
        if self.device_type not in ("cpu", "cuda"):
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype if self.enabled else None,
                              enabled=self.enabled)

    def describe(self) -> str:
        kind = "FP32" if not self.enabled else f"{self.name} autocast" + (" + GradScaler" if self.use_scaler else "")
        return f"{kind} ({self.reason})" if self.reason else kind


@functools.lru_cache(maxsize=None)
def cpu_flags(path: str = "/proc/cpuinfo") -> frozenset[str]:
    """Feature flags of the first processor listed in /proc/cpuinfo (empty where there is none)."""
    try:
        text = Path(path).read_text(errors="ignore")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            return frozenset(value.split())
    return frozenset()


def cpu_bf16_support() -> tuple[bool, str]:
    """(native bf16 on this CPU?, the evidence in words). The cpuinfo flags decide: oneDNN picks its bf16
    kernels by ISA, whatever ATen's own dispatch level (``get_cpu_capability``, reported alongside) is."""
    capability = torch.backends.cpu.get_cpu_capability()
    found = [flag for flag in CPU_BF16_FLAGS if flag in cpu_flags()]
    if found:
        return True, f"CPU reports {'/'.join(found)}, ATen capability {capability}"
    return False, f"CPU reports no avx512_bf16/amx_bf16 flag (ATen capability {capability})"


def cuda_bf16_support(device: torch.device) -> bool:
    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def resolve(device: torch.device | str, amp: bool | None = None, amp_dtype: str | None = None,
            check=None) -> Precision:
    """Training precision from ``--amp/--no-amp`` (None = the device's default) and ``--amp-dtype``.

    ``check(dtype) -> bool`` (optional) compares an autocast forward with the FP32 one (train.check_amp);
    a failed check falls back to FP32. The decision and its reason are logged.
    """
    device_type = torch.device(device).type
    precision = _resolve(device_type, torch.device(device), amp, amp_dtype)
    if precision.enabled and check is not None and not check(precision.dtype):
        precision = Precision(device_type, torch.float32, f"{precision.name} autocast failed the output check")
    LOGGER.info(f"AMP: {precision.describe()}")
    return precision


def _resolve(device_type: str, device: torch.device, amp: bool | None, amp_dtype: str | None) -> Precision:
    if amp is False:
        return Precision(device_type, torch.float32, "--no-amp")
    if amp_dtype not in (None, *DTYPES):
        raise ValueError(f"--amp-dtype {amp_dtype!r}: choose from {sorted(DTYPES)}")
    if device_type == "cuda":
        name = amp_dtype or "fp16"
        if name == "bf16" and not cuda_bf16_support(device):
            return Precision(device_type, torch.float32, "--amp-dtype bf16 but this GPU has no bf16 support")
        return Precision(device_type, DTYPES[name], "CUDA default" if amp is None else "--amp")
    if device_type != "cpu":
        return Precision(device_type, torch.float32, f"no AMP on {device_type}")
    if amp is None:  # bf16 by default where native: equal mAP over 3 seeds on BCCD (docs/bf16.md), 1.56x faster
        native, why = cpu_bf16_support()
        if native:
            return Precision(device_type, torch.bfloat16, f"CPU default with native bf16 (--no-amp for FP32); {why}")
        return Precision(device_type, torch.float32, f"CPU default, no native bf16; {why}")
    if amp_dtype == "fp16":
        return Precision(device_type, torch.float32, "--amp-dtype fp16 is not offered on the CPU (use bf16)")
    native, why = cpu_bf16_support()
    if not native:
        return Precision(device_type, torch.float32, f"--amp asked for bf16, but {why}: bf16 would be emulated")
    return Precision(device_type, torch.bfloat16, f"--amp; {why}")


AMP_CHECK_SIZE = 256  # px of the check's image
AMP_CHECK_ATOL, AMP_CHECK_RTOL = 0.02, 0.05  # on boxes in image units: 5 px at 256, or 5% of a large box


def check_amp(model: torch.nn.Module, device: torch.device, dtype: torch.dtype = torch.float16) -> bool:
    """AMP is used only if an autocast forward (``dtype``) gives the fp32 one's boxes (every anchor's xywh over a
    256 px image, in image units) to within 0.02 + 5%: that catches NaN, overflow and wrong kernels, not rounding.
    In pixels with atol 0.5 it failed bf16 on a COCO yolov5n with a new 3-class head (12 px on one large box),
    so the fine-tune regime trained in FP32; upstream compares normalised detections at atol 0.1. The input comes
    from a private generator, so the global RNG, hence reproducibility, is untouched."""
    if device.type not in ("cuda", "cpu"):
        return False
    model.eval()
    try:
        size = AMP_CHECK_SIZE
        x = torch.rand(1, 3, size, size, device=device, generator=torch.Generator(device).manual_seed(0))
        with torch.no_grad():
            a = model(x)[0]
            with torch.autocast(device_type=device.type, dtype=dtype):
                b = model(x)[0].float()
        ok = torch.allclose(b[..., :4] / size, a[..., :4] / size, atol=AMP_CHECK_ATOL, rtol=AMP_CHECK_RTOL)
    except Exception as e:  # noqa: BLE001 - any failure means AMP is not safe here
        LOGGER.warning(f"AMP: checks failed ({e}), disabling Automatic Mixed Precision")
        ok = False
    finally:
        model.train()
    LOGGER.info("AMP: checks passed" if ok else "AMP: checks failed, training in FP32")
    return bool(ok)


def inference_precision(device: torch.device | str, half: bool) -> Precision:
    """``--half`` for val.py/detect.py: FP16 on CUDA (model converted, as upstream), bf16 autocast on a CPU with
    native bf16 (the model stays FP32, so an EMA passed in is never rounded), else FP32 (logged)."""
    device_type = torch.device(device).type
    if not half:
        return Precision(device_type, torch.float32, "")
    if device_type == "cuda":
        return Precision(device_type, torch.float16, "--half")
    if device_type == "cpu":
        native, why = cpu_bf16_support()
        precision = (Precision(device_type, torch.bfloat16, f"--half on the CPU; {why}") if native else
                     Precision(device_type, torch.float32, f"--half ignored: {why}"))
    else:
        precision = Precision(device_type, torch.float32, f"--half ignored on {device_type}")
    LOGGER.info(f"inference precision: {precision.describe()}")
    return precision


def to_float(value):
    """Floating tensors (also inside lists/tuples/dicts) cast to float32; everything else unchanged."""
    if isinstance(value, torch.Tensor):
        return value.float() if value.is_floating_point() else value
    if isinstance(value, (list, tuple)):
        return type(value)(to_float(v) for v in value)
    if isinstance(value, dict):
        return {k: to_float(v) for k, v in value.items()}
    return value
