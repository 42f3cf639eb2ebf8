"""Step time FP32 vs bf16 autocast on the CPU (issue 11): training steps, the teacher forward, each KD step.

    python benchmarks/bf16_speed.py                                  # 320 px, batch 16, 2 threads, median of 5
    python benchmarks/bf16_speed.py --iters 8 --cases train-yolov5n teacher
    python benchmarks/bf16_speed.py --epoch-data data/BCCD.yaml      # adds one real training epoch per precision

A training step is what train.py's loop does: forward + loss under the precision's autocast (loss in FP32),
backward, SGD step (FP32 weights). ``teacher`` is a yolov5s forward under no_grad. ``kd-<method>`` is the
DistillStep (yolov5s teacher -> yolov5n student) with the loop and the teacher both in the precision.
Random weights and inputs (speed does not depend on them). Each case runs in its own subprocess, so one
case's oneDNN primitive cache and allocator do not help the next; the first ``--warmup`` steps (bf16 kernels
are JIT-compiled per shape) are not timed. Prints a markdown table with the speed-up.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kd_step import _targets  # noqa: E402  (same synthetic targets as the KD step benchmark)

CASES = ("train-yolov5n", "train-yolov5s", "teacher", "kd-fgfi", "kd-cilf", "kd-fgd")
PRECISIONS = ("fp32", "bf16")


def run_case(args) -> dict:
    from distill import teacher as kd_teacher
    from distill.config import KDConfig
    from distill.step import DistillStep
    from engine.step import DetectionStep
    from models.yolo import Model
    from utils import amp
    from utils.loss import ComputeLoss

    torch.set_num_threads(args.threads)
    dtype = amp.DTYPES[args.precision]
    precision = amp.Precision("cpu", dtype)
    hyp = yaml.safe_load((ROOT / "data" / "hyps" / "hyp.scratch-low.yaml").read_text())
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    imgs = torch.rand(args.batch, 3, args.imgsz, args.imgsz, generator=generator)
    targets = _targets(args.batch, generator, args.nc)
    case = args.case
    cfg = "yolov5s.yaml" if case in ("train-yolov5s", "teacher") else "yolov5n.yaml"
    model = Model(cfg, nc=args.nc)
    if case == "teacher":
        model = kd_teacher.Teacher(model, dtype)

        def one_step():
            with torch.no_grad():
                model(imgs)
    else:
        model.train()
        compute_loss = ComputeLoss(model.detect, hyp, nc=args.nc, imgsz=args.imgsz)
        params = list(model.parameters())
        if case.startswith("kd-"):
            teacher = kd_teacher.Teacher(Model("yolov5s.yaml", nc=args.nc), dtype)
            step = DistillStep(model, teacher, compute_loss, KDConfig(methods=(case[3:],)), args.imgsz)
            params += list(step.modules.parameters())
        else:
            step = DetectionStep(compute_loss)
        optimizer = torch.optim.SGD(params, lr=1e-4, momentum=0.9)

        def one_step():
            with precision.autocast():
                total, _ = step(model, imgs, targets, epoch=0, iteration=0)
            optimizer.zero_grad()
            total.backward()
            optimizer.step()

    for _ in range(args.warmup):
        one_step()
    times = []
    for _ in range(args.iters):
        start = time.perf_counter()
        one_step()
        times.append(time.perf_counter() - start)
    times.sort()
    return {"case": case, "precision": args.precision, "median_s": times[len(times) // 2], "min_s": times[0],
            "max_s": times[-1]}


def run_epoch(args) -> dict:
    """One real training epoch (train.run, --noval --noplots --nosave, final validation included)."""
    import train

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    train.run(data=args.epoch_data, cfg="yolov5n.yaml", weights="", imgsz=args.imgsz, batch_size=args.batch,
              epochs=1, device="cpu", workers=args.threads, noval=True, noplots=True, nosave=True,
              amp=args.precision == "bf16", project=str(ROOT / "runs" / "bf16_speed"), name="epoch")
    return {"case": "epoch-yolov5n", "precision": args.precision, "median_s": time.perf_counter() - start,
            "min_s": float("nan"), "max_s": float("nan")}


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser("bf16 vs FP32 CPU speed", add_help=add_help)
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--nc", type=int, default=3, help="classes (3 = BCCD)")
    parser.add_argument("--iters", type=int, default=5, help="timed steps per case (the median is reported)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES)
    parser.add_argument("--epoch-data", default="", help="dataset yaml: also time one yolov5n epoch per precision")
    parser.add_argument("--case", default=None, help=argparse.SUPPRESS)  # internal: one case, JSON out
    parser.add_argument("--precision", default="fp32", choices=PRECISIONS, help=argparse.SUPPRESS)
    return parser


def _child(args, case: str, precision: str) -> dict:
    argv = ["--imgsz", str(args.imgsz), "--batch", str(args.batch), "--nc", str(args.nc), "--iters",
            str(args.iters), "--warmup", str(args.warmup), "--threads", str(args.threads), "--epoch-data",
            args.epoch_data, "--case", case, "--precision", precision]
    out = subprocess.run([sys.executable, __file__, *argv], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(args: argparse.Namespace) -> list[dict]:
    if args.case:
        print(json.dumps(run_epoch(args) if args.case == "epoch-yolov5n" else run_case(args)))
        return []
    from utils import amp

    print(f"# native bf16: {amp.cpu_bf16_support()}; torch {torch.__version__}; {args.threads} threads; "
          f"{args.imgsz} px batch {args.batch}; median of {args.iters} after {args.warmup} warm-up", flush=True)
    cases = list(args.cases) + (["epoch-yolov5n"] if args.epoch_data else [])
    rows = []
    print("| work | FP32 s (min-max) | bf16 s (min-max) | speed-up |\n|---|---|---|---|", flush=True)
    for case in cases:
        pair = {p: _child(args, case, p) for p in PRECISIONS}
        rows += pair.values()
        cells = [f"{r['median_s']:.3f}" + ("" if case.startswith("epoch") else f" ({r['min_s']:.3f}-{r['max_s']:.3f})")
                 for r in pair.values()]
        speedup = pair["fp32"]["median_s"] / pair["bf16"]["median_s"]
        print(f"| {case} | {cells[0]} | {cells[1]} | {speedup:.2f}x |", flush=True)
    return rows


if __name__ == "__main__":
    main(get_args_parser().parse_args())
