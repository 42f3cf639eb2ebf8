"""Distillation methods by name. Adding one: a module with a ``Method`` subclass, its tests, one line here
(and its name in ``distill.config.METHODS``; the order here is the order of the results.csv columns)."""
from distill.methods.base import Method, Setup, Shared
from distill.methods.cilf import CILF
from distill.methods.fgd import FGD
from distill.methods.fgfi import FGFI

METHODS: dict[str, type[Method]] = {"fgfi": FGFI, "cilf": CILF, "fgd": FGD}

__all__ = ["METHODS", "Method", "Setup", "Shared", "FGFI", "CILF", "FGD"]
