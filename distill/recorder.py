"""Record intermediate features of a model with hooks, without touching its ``forward``.

Usage::

    recorder = FeatureRecorder(student)            # default tap: the inputs of the Detect head
    with recorder:                                 # records only inside the block
        preds = model(imgs)                        # `model` may be the DDP wrapper of `student`
    student_feats = recorder.features              # list of (B, C_l, H_l, W_l) tensors
    recorder.close()                               # remove the hooks before pickling the model

Taps:
- ``layers=None, paths=None``: one forward *pre*-hook on the head (``model.detect``, else the last layer of
  ``model.model``); its positional input is the list of neck features P3/P4/P5, whatever the yaml layout.
- ``layers=[17, 20, 23]``: forward hooks on ``model.model[i]`` recording each layer's output.
- ``paths=['model.17', ...]``: forward hooks on ``named_modules()`` names; an unknown name raises KeyError.
  A leading ``module.`` (DDP prefix) is ignored, because the hooks live on the unwrapped model.

Why the defensive details (see docs/style.md section 3.3):
- the input list is copied at capture time: a head that writes ``x[i] = conv(x[i])`` into its input list
  would otherwise turn the recorded neck features into head outputs;
- the hooks are small ``_Tap`` objects: a deep copy of the model (EMA) gets inert taps that never write
  into this recorder, and pickling a model that still carries taps fails with a clear message;
- ``detach=True`` (teacher) stores detached tensors; the default keeps the graph (student: the loss needs it).
"""
from __future__ import annotations

from typing import Iterable

import torch
from torch import nn


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model under DDP / DataParallel wrappers."""
    while isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        model = model.module
    return model


def _copy_container(value):
    """Shallow-copy lists/tuples (the tensors themselves are shared, not cloned)."""
    if isinstance(value, (list, tuple)):
        return list(value)
    return value


class _Tap:
    """A hook callable writing into one slot of a recorder; inert after a deep copy, refuses to pickle."""

    def __init__(self, recorder: "FeatureRecorder | None", slot: int, pre: bool):
        self.recorder, self.slot, self.pre = recorder, slot, pre

    def __call__(self, module, args, output=None):
        recorder = self.recorder
        if recorder is None or not recorder.active:
            return None
        if self.pre:  # forward_pre_hook(module, args): the head's input list is args[0]
            value = _copy_container(args[0] if len(args) == 1 else args)
        else:  # forward_hook(module, args, output)
            value = _copy_container(output)
        recorder._store(self.slot, value)
        return None

    def __deepcopy__(self, memo):
        # ModelEMA deep-copies the student: the copy must never write into the original's buffer.
        return _Tap(None, self.slot, self.pre)

    def __reduce__(self):
        raise TypeError("FeatureRecorder hooks are still attached to this model: call recorder.close() "
                        "before pickling/saving it (or save a state_dict)")


class FeatureRecorder:
    """Capture features of ``model`` inside ``with recorder:``; see the module docstring.

    Args:
        model: the model to tap (a DDP wrapper is unwrapped first).
        layers: indices into ``model.model`` whose outputs are recorded, in this order.
        paths: ``named_modules()`` names whose outputs are recorded, in this order.
        detach: store ``tensor.detach()`` (for the teacher).
    ``features`` is a flat list of tensors in tap order (a head input list is expanded into its levels).
    """

    def __init__(self, model: nn.Module, layers: Iterable[int] | None = None,
                 paths: Iterable[str] | None = None, detach: bool = False):
        if layers is not None and paths is not None:
            raise ValueError("give either layers or paths, not both")
        model = unwrap(model)
        self.detach = detach
        self.active = False
        self._buffer: dict[int, object] = {}
        self.handles = []
        if layers is not None:
            modules = [model.model[int(i)] for i in layers]
            pre = False
        elif paths is not None:
            named = dict(model.named_modules())
            modules = []
            for path in paths:
                name = path[len("module."):] if path.startswith("module.") else path
                if name not in named:
                    raise KeyError(f"no module named {path!r} in {type(model).__name__}; "
                                   f"examples: {list(named)[1:6]}")
                modules.append(named[name])
            pre = False
        else:
            head = getattr(model, "detect", None)
            if head is None:
                head = model.model[-1]
            modules, pre = [head], True
        for slot, module in enumerate(modules):
            tap = _Tap(self, slot, pre)
            handle = module.register_forward_pre_hook(tap) if pre else module.register_forward_hook(tap)
            self.handles.append(handle)
        self.num_taps = len(modules)

    def _store(self, slot: int, value) -> None:
        if self.detach:
            value = [v.detach() for v in value] if isinstance(value, list) else value.detach()
        self._buffer[slot] = value  # a layer run twice (e.g. TTA) keeps its latest output

    @property
    def features(self) -> list[torch.Tensor]:
        """Recorded tensors in tap order; raises if a tap did not fire."""
        missing = [s for s in range(self.num_taps) if s not in self._buffer]
        if missing:
            raise RuntimeError(f"recorder taps {missing} recorded nothing: run the model inside `with recorder:`")
        out = []
        for slot in range(self.num_taps):
            value = self._buffer[slot]
            out.extend(value if isinstance(value, list) else [value])
        return out

    def clear(self) -> None:
        self._buffer = {}

    def __enter__(self) -> "FeatureRecorder":
        if not self.handles:
            raise RuntimeError("recorder is closed")
        self.clear()
        self.active = True
        return self

    def __exit__(self, *exc) -> None:
        self.active = False

    def close(self) -> None:
        """Remove every hook and drop the buffer; the model is then free of this recorder."""
        for handle in self.handles:
            handle.remove()
        self.handles = []
        self.active = False
        self.clear()

    remove = close
