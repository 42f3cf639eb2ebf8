"""Checkpoint files: atomic writes, and reads that never execute code from the file.

Our own checkpoints hold plain data only (dicts, lists, strings, numbers, tensors), so
``torch.load(weights_only=True)`` reads them. Upstream YOLOv5 ``.pt`` files pickle whole ``nn.Module`` objects
(``models.yolo.Model``/``DetectionModel``, ``models.common.Conv`` ...). Those are read through a restricted
unpickler that admits only an allow-list: torch's tensor rebuilders, a fixed set of ``torch.nn`` layers, plain
containers, and the upstream YOLOv5 class names, which are mapped to inert stand-in modules (no upstream code is
needed or run). Anything else is refused with an error naming the global.
"""
from __future__ import annotations

import importlib
import pickle
import types
import warnings
import zipfile
from pathlib import Path

import torch
import torch.nn as nn

from utils import atomic


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint asked for a global outside the allow-list."""


class UpstreamModule(nn.Module):
    """Inert stand-in for a pickled upstream YOLOv5 module: it only carries the unpickled attributes."""

    upstream_name = "UpstreamModule"

    def forward(self, *args, **kwargs):  # never run
        raise RuntimeError(f"{self.upstream_name} is an inert stand-in for an upstream checkpoint module")


UPSTREAM_CLASSES = {
    "models.yolo": {"Model", "DetectionModel", "Detect", "BaseModel", "Segment", "SegmentationModel"},
    "models.common": {
        "Conv", "DWConv", "Bottleneck", "BottleneckCSP", "C3", "SPP", "SPPF", "Focus", "Concat",
        "GhostConv", "GhostBottleneck", "C3Ghost", "C3TR", "C3SPP", "C3x", "CrossConv", "Contract", "Expand",
        "AutoShape",
    },
    "models.experimental": {"MixConv2d", "CrossConv", "Sum", "Ensemble"},
}
_STANDINS: dict[str, type] = {}

TORCH_NN = {
    "torch.nn.modules.conv": {"Conv2d"},
    "torch.nn.modules.batchnorm": {"BatchNorm2d", "SyncBatchNorm"},
    "torch.nn.modules.activation": {"SiLU", "ReLU", "ReLU6", "LeakyReLU", "Hardswish", "Sigmoid", "Mish",
                                    "ELU", "GELU", "Tanh"},
    "torch.nn.modules.container": {"Sequential", "ModuleList", "ModuleDict"},
    "torch.nn.modules.pooling": {"MaxPool2d"},
    "torch.nn.modules.upsampling": {"Upsample"},
    "torch.nn.modules.linear": {"Identity", "Linear"},
    "torch.nn.modules.dropout": {"Dropout"},
}
PLAIN = {
    ("collections", "OrderedDict"), ("builtins", "set"), ("__builtin__", "set"), ("builtins", "frozenset"),
    ("__builtin__", "frozenset"), ("builtins", "slice"), ("pathlib", "PosixPath"), ("pathlib", "WindowsPath"),
    ("pathlib", "PurePosixPath"), ("pathlib", "PureWindowsPath"), ("pathlib", "Path"),
    ("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_parameter"),
    ("torch._utils", "_rebuild_parameter_with_state"), ("torch", "Size"), ("torch", "device"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"), ("numpy", "ndarray"),
    ("numpy", "dtype"),
}
TORCH_DTYPES = {"float16", "float32", "float64", "bfloat16", "int64", "int32", "uint8", "bool", "half", "float"}


def _standin(name: str) -> type:
    if name not in _STANDINS:
        _STANDINS[name] = type(name, (UpstreamModule,), {"upstream_name": name, "__module__": __name__})
    return _STANDINS[name]


def _allowed_global(module: str, name: str):
    """The object a pickle may reference as ``module.name``, or None when it is not allowed."""
    if name in UPSTREAM_CLASSES.get(module, ()):
        return _standin(name)
    if name in TORCH_NN.get(module, ()):
        return getattr(nn, name)
    if module == "torch" and name in TORCH_DTYPES:
        return getattr(torch, name)
    if (module, name) in PLAIN:
        return getattr(importlib.import_module("builtins" if module == "__builtin__" else module), name)
    return None


class RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        obj = _allowed_global(module, name)
        if obj is None:
            raise UnsafeCheckpointError(
                f"refused to load global '{module}.{name}': not in the allow-list of upstream YOLOv5 checkpoint "
                "contents (a checkpoint must never run code)"
            )
        return obj


restricted_pickle = types.SimpleNamespace(
    __name__="restricted_pickle",
    Unpickler=RestrictedUnpickler,
    load=lambda f, **kw: RestrictedUnpickler(f, **kw).load(),
)


def safe_load(path) -> object:
    """Read a checkpoint without executing anything from it.

    Tries ``weights_only=True`` (our own format) first, then the restricted upstream unpickler.
    Raises FileNotFoundError, UnsafeCheckpointError (a refused global) or ValueError (not a checkpoint).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found")
    try:
        with warnings.catch_warnings():  # its note on foreign pickle protocols is noise: we explain below
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        pass  # a foreign global: maybe an upstream file, retry with the restricted unpickler
    except Exception as e:  # noqa: BLE001 - torch raises many types for a damaged file
        raise unreadable(path, e) from e
    try:
        return torch.load(path, map_location="cpu", pickle_module=restricted_pickle, weights_only=False)
    except UnsafeCheckpointError as e:
        raise UnsafeCheckpointError(f"{path}: {e}") from None
    except Exception as e:  # noqa: BLE001
        raise unreadable(path, e) from e


def unreadable(path: Path, error: Exception) -> ValueError:
    """A one-line ValueError saying what ``path`` is, for a file that torch.load cannot read."""
    with open(path, "rb") as f:
        head = f.read(512)
    detail = (str(error).strip().splitlines() or [""])[0][:160]
    if not head:
        what = "an empty file, not a PyTorch checkpoint"
    elif head[:4] == b"PK\x03\x04" and not zipfile.is_zipfile(path):
        what = "truncated or damaged: a zip-format torch file without its end (an interrupted save or copy?)"
    elif head[:4] == b"PK\x03\x04":
        with zipfile.ZipFile(path) as z:
            is_torch = any(name.endswith("data.pkl") for name in z.namelist())
        what = (f"a damaged PyTorch checkpoint ({type(error).__name__}: {detail})" if is_torch
                else "a zip archive, but not a PyTorch checkpoint (no data.pkl inside)")
    elif "magic number" in detail:
        what = "a pickle, but not a torch.save checkpoint (no torch magic number)"
    elif _is_text(head):
        what = "a text file, not a PyTorch checkpoint"
    else:
        what = f"not a readable PyTorch checkpoint ({type(error).__name__}: {detail})"
    return ValueError(f"{path}: {what}")


def _is_text(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(ch.isprintable() or ch in "\t\r\n" for ch in text)


def save_checkpoint(obj, path) -> Path:
    """``torch.save`` atomically (utils.atomic.write_atomic: temp file, fsync, rename over ``path``).

    A crash at any moment leaves either the old file or the new one, never a half-written checkpoint; a failed
    write (a full disk) raises ``atomic.WriteError`` naming the file, with the previous one unchanged.
    """
    return atomic.write_atomic(path, lambda f: torch.save(obj, f))
