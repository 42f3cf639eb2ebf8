"""Command-line helpers: the upstream YOLOv5 flags this toolkit accepts only to refuse them (each with the
reason), the options as plain data (``plain_opt``) and ``run(**kwargs)`` overrides (``override_options``).

A YOLOv5 user's habitual command line should stop with a message naming the flag and why, not with argparse's
"unrecognized arguments", and never run with the flag silently ignored. Each refused flag takes an optional value
(``--dnn`` or ``--entity NAME`` both parse); ``check_refused`` raises for any that was given. Flags that work are
declared in the scripts themselves; tests/test_flags.py checks that every flag is either read or listed here.
"""
from __future__ import annotations

import argparse
import os
import pickle
import sys
from pathlib import Path

_LOGGER_SERVICE = ("a Weights & Biases / ClearML / Comet option of upstream YOLOv5; this toolkit has no "
                   "logger-service integration (metrics go to results.csv and TensorBoard events in the run directory)")
_TF_EXPORT = "only for upstream's TensorFlow/TensorRT/CoreML exports; this exporter writes ONNX and TorchScript"

REFUSED: dict[str, dict[str, str]] = {
    "train": {
        "--bucket": "uploads to a Google Cloud bucket, which this toolkit never does (no network access)",
        "--entity": _LOGGER_SERVICE,
        "--upload_dataset": _LOGGER_SERVICE,
        "--bbox_interval": _LOGGER_SERVICE,
        "--artifact_alias": _LOGGER_SERVICE,
    },
    "val": {
        "--save-hybrid": "upstream's hybrid labels feed the ground truth into the predictions and inflate mAP; "
                         "use --save-txt",
        "--dnn": "OpenCV DNN runs ONNX models; val.py runs .pt checkpoints only",
    },
    "detect": {
        "--dnn": "OpenCV DNN runs ONNX models; detect.py runs .pt checkpoints only",
        "--visualize": "feature-map visualisation is not implemented",
        "--update": "upstream strips optimizers from its hub models with it; run detect.py on a stripped "
                    "best.pt/last.pt instead",
    },
    "export": {
        "--data": _TF_EXPORT,
        "--half": "FP16 export is not implemented: the exported models and their parity checks are FP32",
        "--inplace": "our Detect head never writes into its inputs, so there is nothing to switch",
        "--keras": _TF_EXPORT,
        "--optimize": "TorchScript mobile optimisation (optimize_for_mobile) is not implemented",
        "--int8": _TF_EXPORT,
        "--workspace": _TF_EXPORT,
        "--verbose": _TF_EXPORT,
        "--nms": _TF_EXPORT + " (NMS is not part of the exported graph; run utils.nms on its output)",
        "--agnostic-nms": _TF_EXPORT,
        "--topk-per-class": _TF_EXPORT,
        "--topk-all": _TF_EXPORT,
        "--iou-thres": _TF_EXPORT,
        "--conf-thres": _TF_EXPORT,
    },
}


# What bad input raises (a missing, damaged or foreign file, a refused or contradictory flag, a bad yaml); at the
# command line these end the process with their one-line message instead of a traceback
INPUT_ERRORS = (FileNotFoundError, ValueError, pickle.UnpicklingError)


def main_or_exit(main, opt: argparse.Namespace, errors: tuple[type[BaseException], ...] = INPUT_ERRORS):
    """A script's ``__main__``: ``main(opt)``, and for ``errors`` one ``ERROR: <message>`` line on stderr and exit
    status 1. ``YOLO_TRACEBACK=1`` lets them propagate with their traceback (to debug a ValueError that is a bug)."""
    try:
        return main(opt)
    except errors as e:
        if os.environ.get("YOLO_TRACEBACK", "") not in ("", "0"):
            raise
        print(f"ERROR: {e}  (YOLO_TRACEBACK=1 shows the traceback)", file=sys.stderr)
        raise SystemExit(1) from None


def dest(flag: str) -> str:
    """argparse's attribute name for a flag: ``--save-hybrid`` -> ``save_hybrid``."""
    return flag.lstrip("-").replace("-", "_")


def add_refused(parser: argparse.ArgumentParser, script: str) -> None:
    """Declare ``REFUSED[script]`` on ``parser``: each takes an optional value and defaults to None."""
    for flag, why in REFUSED[script].items():
        parser.add_argument(flag, nargs="?", const=True, default=None, help=f"not supported: {why}")


def refused_message(flag: str, why: str) -> str:
    return f"{flag} is not supported: {why}"


def check_refused(opt: argparse.Namespace | dict, script: str) -> None:
    """ValueError naming the first refused flag that was given (a value other than None, False or '')."""
    values = opt if isinstance(opt, dict) else vars(opt)
    for flag, why in REFUSED[script].items():
        if values.get(dest(flag)) not in (None, False, ""):
            raise ValueError(refused_message(flag, why))


def plain_opt(opt: argparse.Namespace) -> dict:
    """vars(opt) with paths as strings, safe for yaml and for weights_only checkpoints."""
    def clean(v):
        if isinstance(v, Path):
            return str(v)
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        return v
    return {k: clean(v) for k, v in vars(opt).items()}


def override_options(opt: argparse.Namespace, kwargs: dict, caller: str) -> argparse.Namespace:
    """Set parsed defaults from ``run(**kwargs)``; an unknown option name raises TypeError (train and train_kd)."""
    for k, v in kwargs.items():
        if not hasattr(opt, k):
            raise TypeError(f"{caller} got an unknown option {k!r}")
        setattr(opt, k, v)
    return opt


def ignored_on_resume(opt: argparse.Namespace, defaults: dict) -> list[str]:
    """The flags given beside --resume (values other than ``defaults``): the run's saved options replace them."""
    skip = {"resume", "local_rank"}  # the launcher's --local-rank is per process, not an option of the run
    return [f"--{k.replace('_', '-')}" for k, v in vars(opt).items() if k in defaults and k not in skip
            and v != defaults[k]]


def checked_kwargs(opt: argparse.Namespace, script: str) -> dict:
    """``vars(opt)`` for a script's ``run(**kwargs)``: refused flags raise (check_refused), then are left out."""
    check_refused(opt, script)
    refused = {dest(flag) for flag in REFUSED[script]}
    return {k: v for k, v in vars(opt).items() if k not in refused}
