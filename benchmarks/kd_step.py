"""Seconds per training step: plain detection step vs DistillStep per method, and the teacher forward alone.

    python benchmarks/kd_step.py                       # yolov5s -> yolov5n, 320 px, batch 16, CPU
    python benchmarks/kd_step.py --device 0 --iters 20 # on a GPU
    python benchmarks/kd_step.py --teacher ../shared/weights/bccd-yolov5s-320.pt --nc 3

Each case runs in its own subprocess so its peak memory (CPU: max RSS; CUDA: max allocated) is its own.
A step = forward, loss, backward, optimizer step, as in train.py's loop (without AMP/EMA, same for all cases).
Target (issue 6): KD step <= 1.10 x (student step + teacher forward).
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CASES = ("teacher", "student", "fgfi", "cilf", "fgd", "cwd", "pkd", "ogd", "fgfi+cilf+fgd")


def _models(args, device):
    from distill.teacher import Teacher, load_teacher
    from models.yolo import Model

    torch.manual_seed(0)
    if args.teacher:
        teacher = load_teacher(args.teacher, device)
    else:
        teacher = Teacher(Model(args.teacher_cfg, nc=args.nc).to(device))
    student = Model(args.student_cfg, nc=teacher.nc).to(device).train()
    student.names = dict(teacher.module.names)  # the same classes, as in a real run (OGD checks them)
    return student, teacher


def _targets(batch: int, generator: torch.Generator, nc: int, per_image: int = 8) -> torch.Tensor:
    n = batch * per_image
    xy = torch.rand(n, 2, generator=generator) * 0.6 + 0.2
    wh = torch.rand(n, 2, generator=generator) * 0.25 + 0.05
    image = torch.arange(batch).repeat_interleave(per_image).float()[:, None]
    cls = torch.randint(0, nc, (n, 1), generator=generator).float()
    return torch.cat((image, cls, xy, wh), 1)


def run_case(args) -> dict:
    from distill.config import KDConfig
    from distill.step import DistillStep
    from utils.loss import ComputeLoss

    device = torch.device("cpu" if args.device == "cpu" else f"cuda:{args.device}")
    if device.type == "cpu" and args.threads:
        torch.set_num_threads(args.threads)
    student, teacher = _models(args, device)
    hyp = yaml.safe_load((ROOT / "data" / "hyps" / "hyp.scratch-low.yaml").read_text())
    compute_loss = ComputeLoss(student.detect, hyp, nc=student.nc, imgsz=args.imgsz)
    generator = torch.Generator().manual_seed(0)
    imgs = torch.rand(args.batch, 3, args.imgsz, args.imgsz, generator=generator).to(device)
    targets = _targets(args.batch, generator, student.nc).to(device)
    params = list(student.parameters())
    if args.case in ("teacher", "student"):
        step = None
    else:
        config = KDConfig(methods=tuple(args.case.split("+")), adapter_kernel=args.adapter_kernel)
        step = DistillStep(student, teacher, compute_loss, config, args.imgsz)
        params += list(step.modules.parameters())
    optimizer = torch.optim.SGD(params, lr=1e-4, momentum=0.9)

    def one_step():
        if args.case == "teacher":
            with torch.no_grad():
                teacher(imgs)
            return
        if step is None:
            total, _ = compute_loss(student(imgs), targets)
        else:
            total, _ = step(student, imgs, targets, epoch=0, iteration=0)
        optimizer.zero_grad()
        total.backward()
        optimizer.step()

    for _ in range(args.warmup):
        one_step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(args.iters):
        start = time.perf_counter()
        one_step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    times.sort()
    peak = (torch.cuda.max_memory_allocated(device) if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {"case": args.case, "median_s": times[len(times) // 2], "min_s": times[0], "peak_mb": peak / 2**20}


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser("KD step benchmark", add_help=add_help)
    parser.add_argument("--student-cfg", default="yolov5n.yaml")
    parser.add_argument("--teacher-cfg", default="yolov5s.yaml")
    parser.add_argument("--teacher", default="", help="teacher checkpoint (default: random --teacher-cfg weights)")
    parser.add_argument("--nc", type=int, default=80, help="classes when the teacher is built from a yaml")
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="cpu or a CUDA index")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0 = torch default)")
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES)
    parser.add_argument("--adapter-kernel", type=int, choices=(1, 3), default=3, help="FGFI/CILF adapter kernel")
    parser.add_argument("--case", default=None, help=argparse.SUPPRESS)  # internal: run one case, print JSON
    return parser


def main(args: argparse.Namespace) -> list[dict]:
    if args.case:
        print(json.dumps(run_case(args)))
        return []
    rows = []
    for case in args.cases:
        argv = [a for a in sys.argv[1:] if a != "--cases" and a not in CASES]
        out = subprocess.run([sys.executable, __file__, *argv, "--case", case], capture_output=True, text=True,
                             check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(f"{case:>16}: {rows[-1]['median_s']:.3f} s/step (min {rows[-1]['min_s']:.3f}), "
              f"peak {rows[-1]['peak_mb']:.0f} MB", flush=True)
    by_case = {r["case"]: r["median_s"] for r in rows}
    if "teacher" in by_case and "student" in by_case:
        budget = by_case["student"] + by_case["teacher"]
        for case in CASES[2:]:
            if case in by_case:
                print(f"{case:>16}: {by_case[case] / budget:.3f} x (student step + teacher forward)")
    return rows


if __name__ == "__main__":
    main(get_args_parser().parse_args())
