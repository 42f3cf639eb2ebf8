"""Distillation methods by name. Adding one: a module with a ``Method`` subclass and its options dataclass, its
tests, and one line here (KDConfig fields and train_kd.py flags follow; this order is the results.csv order)."""
from distill.methods.base import Method, Setup, Shared
from distill.methods.cilf import CILF
from distill.methods.cwd import CWD
from distill.methods.fgd import FGD
from distill.methods.fgfi import FGFI
from distill.methods.ogd import OGD
from distill.methods.pkd import PKD

METHODS: dict[str, type[Method]] = {"fgfi": FGFI, "cilf": CILF, "fgd": FGD, "cwd": CWD, "pkd": PKD, "ogd": OGD}

__all__ = ["METHODS", "Method", "Setup", "Shared", "FGFI", "CILF", "FGD", "CWD", "PKD", "OGD"]
