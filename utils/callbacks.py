"""A small named-hook registry: the training loop fires events, integrations subscribe to them."""
from __future__ import annotations

import logging
from collections import defaultdict
from typing import Callable

LOGGER = logging.getLogger(__name__)

HOOKS = (
    "on_pretrain_routine_start", "on_pretrain_routine_end",
    "on_train_start", "on_train_epoch_start", "on_train_batch_start", "on_before_zero_grad",
    "on_train_batch_end", "on_train_epoch_end", "on_val_end", "on_fit_epoch_end", "on_model_save",
    "on_train_end",
)


class Callbacks:
    """``register(hook, fn)`` then ``run(hook, *args, **kwargs)``; unknown hook names raise."""

    def __init__(self):
        self._hooks: dict[str, list[tuple[str, Callable]]] = defaultdict(list)

    def register(self, hook: str, fn: Callable, name: str = "") -> None:
        if hook not in HOOKS:
            raise KeyError(f"unknown callback hook {hook!r}; known: {', '.join(HOOKS)}")
        if not callable(fn):
            raise TypeError(f"callback for {hook!r} is not callable: {fn!r}")
        self._hooks[hook].append((name or getattr(fn, "__name__", "callback"), fn))

    def get(self, hook: str) -> list[Callable]:
        return [fn for _, fn in self._hooks.get(hook, [])]

    def run(self, hook: str, *args, **kwargs) -> None:
        if hook not in HOOKS:
            raise KeyError(f"unknown callback hook {hook!r}")
        for _, fn in self._hooks.get(hook, []):
            fn(*args, **kwargs)
