"""Model weights in and out: our plain-data model records, and upstream YOLOv5 `.pt` import.

A *record* is ``{'yaml': dict, 'state_dict': {name: fp16 tensor}, 'names': {int: str}, 'stride': [float]}``:
plain data that ``torch.load(weights_only=True)`` reads and that no refactor of our classes can break.
"""
from __future__ import annotations

import logging

import torch

from models.yolo import Model
from utils import checkpoint

LOGGER = logging.getLogger(__name__)
LEGACY_BUFFERS = ("anchor_grid",)  # registered buffers in YOLOv5 v5.x heads, derived data we rebuild


def model_record(model: Model, half: bool = True) -> dict:
    """Plain-data record of an (unfused) model; floating tensors are stored in fp16 like upstream (``half``), or
    as they are (training checkpoints: a resume continues from the exact weights)."""
    model = getattr(model, "module", model)  # DDP
    state = {k: (v.detach().half() if half and v.is_floating_point() else v.detach()).cpu()
             for k, v in model.state_dict().items()}
    return {
        "yaml": model.yaml,
        "state_dict": state,
        "names": {int(k): str(v) for k, v in dict(model.names).items()},
        "stride": [float(s) for s in model.stride],
    }


def is_record(obj) -> bool:
    return isinstance(obj, dict) and {"yaml", "state_dict"} <= obj.keys()


def _names_dict(names, nc: int) -> dict:
    if isinstance(names, dict):
        return {int(k): str(v) for k, v in names.items()}
    if isinstance(names, (list, tuple)):
        return {i: str(v) for i, v in enumerate(names)}
    return {i: str(i) for i in range(nc)}


def model_from_record(record: dict, source: str = "checkpoint") -> Model:
    """Build our Model from a record and load its weights strictly (every key and shape must match)."""
    yaml = dict(record["yaml"])
    model = Model(yaml, ch=yaml.get("ch", 3), nc=yaml.get("nc"))
    state = {k: v for k, v in record["state_dict"].items() if not k.endswith(LEGACY_BUFFERS)}
    _load_strict(model, state, source)
    model.names = _names_dict(record.get("names"), model.nc)
    stride = record.get("stride")
    if stride is not None and [float(s) for s in stride] != [float(s) for s in model.stride]:
        raise ValueError(f"{source}: stride {list(stride)} does not match the built model's {model.stride.tolist()}")
    return model.float()


def _load_strict(model: Model, state: dict, source: str):
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = [f"{k} {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                  for k in sorted(own.keys() & state.keys()) if own[k].shape != state[k].shape]
    if missing or unexpected or mismatched:
        def show(xs):
            return ", ".join(xs[:8]) + (f" ... (+{len(xs) - 8})" if len(xs) > 8 else "")
        problems = [f"{name}: {show(xs)}" for name, xs in
                    (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched)) if xs]
        raise ValueError(f"{source}: weights do not match the architecture in its yaml; " + "; ".join(problems))
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()}, strict=True)


def intersect_state(source: dict, target: dict, exclude=()) -> dict:
    """Entries of ``source`` whose key exists in ``target`` with the same shape and contains no excluded text."""
    return {k: v for k, v in source.items()
            if k in target and not any(x in k for x in exclude) and v.shape == target[k].shape}


def freeze_layers(model: torch.nn.Module, freeze) -> None:
    """``[10]`` freezes layers 0-9 (the backbone); a longer list names the layers explicitly."""
    freeze = list(freeze) if isinstance(freeze, (list, tuple)) else [int(freeze)]
    layers = freeze if len(freeze) > 1 else range(freeze[0])
    prefixes = [f"model.{x}." for x in layers]
    for name, p in model.named_parameters():
        p.requires_grad = not any(x in name for x in prefixes)
        if not p.requires_grad:
            LOGGER.info(f"freezing {name}")


def upstream_record(module) -> dict:
    """Record from an unpickled upstream YOLOv5 model (an inert stand-in carrying yaml, names, stride, weights)."""
    yaml = getattr(module, "yaml", None)
    if not isinstance(yaml, dict):
        raise ValueError("upstream model has no yaml dict: cannot rebuild its architecture")
    stride = getattr(module, "stride", None)
    return {
        "yaml": yaml,
        "state_dict": module.state_dict(),
        "names": getattr(module, "names", None),
        "stride": None if stride is None else [float(s) for s in stride],
    }


def as_record(obj, source: str):
    """A checkpoint's model entry as a record (None stays None)."""
    if obj is None or is_record(obj):
        return obj
    if isinstance(obj, checkpoint.UpstreamModule):
        return upstream_record(obj)
    raise ValueError(f"{source}: unrecognised model entry of type {type(obj).__name__}")


def load_checkpoint(path) -> dict:
    """The checkpoint dict with ``model``/``ema`` as records, whatever format the file is in."""
    ckpt = checkpoint.safe_load(path)
    if is_record(ckpt) or isinstance(ckpt, checkpoint.UpstreamModule):  # a bare model
        ckpt = {"model": ckpt}
    if isinstance(ckpt, dict) and ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        raise ValueError(f"{path}: a bare state_dict ({len(ckpt)} tensors, e.g. {next(iter(ckpt))!r}), not a YOLOv5 "
                         "checkpoint: without its 'model' entry (yaml + weights) the architecture is unknown")
    if not isinstance(ckpt, dict) or ("model" not in ckpt and "ema" not in ckpt):
        raise ValueError(f"{path}: not a YOLOv5 checkpoint (no 'model' or 'ema' entry)")
    for key in ("model", "ema"):
        if key in ckpt:
            ckpt[key] = as_record(ckpt[key], f"{path} ['{key}']")
    return ckpt


def load_model(path, device="cpu", fuse: bool = True) -> Model:
    """An eval-mode FP32 model from our or an upstream checkpoint (its EMA if present), optionally fused."""
    ckpt = load_checkpoint(path)
    record = ckpt.get("ema") or ckpt.get("model")
    if record is None:
        raise ValueError(f"{path}: checkpoint holds no model")
    model = model_from_record(record, source=str(path)).to(device).eval()
    return model.fuse() if fuse else model

