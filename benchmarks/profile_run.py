"""Where a training run's time goes (issue 24): train.py or train_kd.py in this process, its phases timed.

    DATASETS_DIR=../shared/datasets python benchmarks/profile_run.py                 # yolov5n, BCCD, 320 px, 2 epochs
    DATASETS_DIR=../shared/datasets python benchmarks/profile_run.py --no-amp --out benchmarks/results/profile_fp32.json
    DATASETS_DIR=../shared/datasets python benchmarks/profile_run.py --kd cwd        # train_kd.py with the shared teacher

Each phase is the wall time spent inside one function (a timing wrapper put on it before the run; ``--workers 0``
so the loader works in this process and is timed too). Phases nest where the code does (validation holds NMS and
metrics; the training step holds the loss), and the table says so. "pure model compute" is the forward + loss +
backward of the step plus the optimizer step: what a training epoch cannot go below.
"""
from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TOTALS: dict[str, float] = defaultdict(float)
CALLS: dict[str, int] = defaultdict(int)


def _timed(key: str, fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):  # noqa: ANN202
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            TOTALS[key] += time.perf_counter() - start
            CALLS[key] += 1
    wrapper.profile_phase = key
    return wrapper


def phases() -> list[tuple[str, object, str, str]]:
    """(phase, owner, attribute, parent phase or ''): where each function is looked up when the run calls it."""
    import data.dataset
    import engine.checkpointing
    import engine.loop
    import engine.step
    import torch
    import train
    import val
    from distill.step import DistillStep
    from utils import amp, autoanchor, plots, results, nms, metrics, ema

    return [
        ("dataset scan + label cache + image cache", data.dataset.LoadImagesAndLabels, "__init__", ""),
        ("loader: load, augment, collate (train and val)", data.dataset.LoadImagesAndLabels, "__getitem__", ""),
        ("AutoAnchor check", autoanchor, "check_anchors", ""),
        ("AMP check", amp, "check_amp", ""),
        ("labels plot", plots, "plot_labels", ""),
        ("training epochs (train_one_epoch, all of it)", engine.loop, "train_one_epoch", ""),
        ("  training step: forward + loss (+ teacher, KD)", engine.step.DetectionStep, "__call__", "epochs"),
        ("  training step: forward + loss (+ teacher, KD)", DistillStep, "__call__", "epochs"),
        ("  of which loss targets (build_targets, train + val)", _loss_owner(), "build_targets", "step"),
        ("  backward", torch.Tensor, "backward", "epochs"),
        ("  optimizer step (unscale, clip, step, EMA)", engine.loop, "optimizer_step", "epochs"),
        ("    of which EMA update", ema.ModelEMA, "update", "optimizer"),
        ("  train batch plots", engine.loop, "plot_batch", "epochs"),
        ("validation (val.run, all of it)", val, "run", ""),
        ("  of which NMS", nms, "non_max_suppression", "validation"),
        ("  of which metrics (AP per class)", metrics, "ap_per_class", "validation"),
        ("checkpoint writes (last.pt, best.pt)", engine.loop, "save_run", ""),
        ("final strip + best.pt validation", train, "finish", ""),
        ("results.png", results, "plot_results", ""),
    ]


def _loss_owner():
    from utils.loss import ComputeLoss

    return ComputeLoss


def install() -> None:
    for key, owner, attr, _ in phases():
        fn = getattr(owner, attr, None)
        if fn is not None and not hasattr(fn, "profile_phase"):  # (functools.wraps copies the attribute)
            setattr(owner, attr, _timed(key, fn))


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--img", type=int, default=320)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--weights", default="", help="'' from scratch (default), or a .pt")
    p.add_argument("--no-amp", action="store_true", help="FP32 (default: the CPU's bf16 autocast where native)")
    p.add_argument("--kd", default=None, help="a KD method: train_kd.py with --teacher")
    p.add_argument("--teacher", default=str(ROOT.parent / "shared" / "weights" / "bccd-yolov5s-320.pt"))
    p.add_argument("--out", type=Path, default=None, help="write the table as JSON here")
    args = p.parse_args(argv)

    install()
    argv_run = ["--data", "data/BCCD.yaml", "--cfg", "yolov5n.yaml", "--weights", args.weights, "--img", str(args.img),
                "--batch-size", str(args.batch), "--epochs", str(args.epochs), "--workers", "0", "--device", "cpu",
                "--project", "/tmp/profile_run", "--name", "exp", "--exist-ok", "--seed", "0"]
    argv_run += ["--no-amp"] if args.no_amp else []
    start = time.perf_counter()
    if args.kd:
        import train_kd
        train_kd.main(train_kd.parse_opt(argv_run + ["--teacher", args.teacher, "--kd", args.kd]))
    else:
        import train
        train.main(train.parse_opt(argv_run))
    wall = time.perf_counter() - start
    compute = (TOTALS["  training step: forward + loss (+ teacher, KD)"] + TOTALS["  backward"]
               + TOTALS["  optimizer step (unscale, clip, step, EMA)"])
    epochs = TOTALS["training epochs (train_one_epoch, all of it)"]
    rows = [(k, TOTALS[k], CALLS[k]) for k in dict.fromkeys(key for key, *_ in phases()) if CALLS[k]]
    print(f"\n{'phase':<56} {'seconds':>9} {'% wall':>7} {'calls':>7}")
    for key, seconds, calls in rows:
        print(f"{key:<56} {seconds:9.2f} {100 * seconds / wall:6.1f}% {calls:7d}")
    print(f"{'pure model compute (step + backward + optimizer)':<56} {compute:9.2f} {100 * compute / wall:6.1f}%")
    print(f"{'whole run (wall)':<56} {wall:9.2f} {100.0:6.1f}%")
    print(f"training epochs / pure model compute: {epochs / compute:.2f}x (issue 24's target: <= 1.3x)")
    out = {"argv": argv_run + (["--kd", args.kd] if args.kd else []), "wall_s": wall, "compute_s": compute,
           "epochs_s": epochs,
           "phases": {k: {"seconds": s, "calls": c} for k, s, c in rows}}
    if args.out:
        args.out.write_text(json.dumps(out, indent=1) + "\n")
    return out


if __name__ == "__main__":
    main()
