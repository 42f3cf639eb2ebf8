"""Accuracy of bf16 autocast against FP32 on BCCD (issue 11, point 4): >= 3 seeds per arm, mean +- std.

    DATASETS_DIR=../shared/datasets python benchmarks/bf16_accuracy.py            # everything (resumable)
    python benchmarks/bf16_accuracy.py --arms plain-fp32 plain-bf16 --seeds 0 1 2
    python benchmarks/bf16_accuracy.py --report-only                               # table from the JSONs so far
    python benchmarks/bf16_accuracy.py --quick --runs /tmp/r --results /tmp/j      # the pipeline in ~1 min

Recipe (the BCCD benchmark's): yolov5n from scratch, 320 px, batch 16, 60 epochs, SGD, hyp.scratch-low, CPU,
evaluated by val.py in FP32 on best.pt on BCCD val. Arms:

- ``plain-fp32`` / ``plain-bf16``: train.py ``--no-amp`` / ``--amp`` (bf16 autocast; needs native bf16);
- ``kd-teacher-fp32`` / ``kd-teacher-bf16``: train_kd.py ``--kd fgd`` (FP32 student loop) with the teacher's
  forward in FP32 / bf16 (``--teacher-dtype``), the shared BCCD yolov5s teacher.

Runs go arm by arm, seed by seed, each a subprocess in ``<runs>/<arm>/seed<k>``; its summary is written to
``<results>/<arm>-seed<k>.json``. A run whose JSON exists is skipped; an interrupted one (``weights/last.pt``
still holding its optimizer) is resumed with ``--resume``. The report (``<results>/report.md``) gives mean +- std
(sample std) per arm and whether the bf16 mean is within one std of the FP32 mean, for mAP50 and mAP50-95.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TEACHER = (ROOT / ".." / "shared" / "weights" / "bccd-yolov5s-320.pt").resolve()
ARMS = {
    "plain-fp32": ["train.py", "--no-amp"],
    "plain-bf16": ["train.py", "--amp", "--amp-dtype", "bf16"],
    "kd-teacher-fp32": ["train_kd.py", "--no-amp", "--kd", "fgd", "--teacher-dtype", "fp32"],
    "kd-teacher-bf16": ["train_kd.py", "--no-amp", "--kd", "fgd", "--teacher-dtype", "bf16"],
}
PAIRS = (("plain-fp32", "plain-bf16"), ("kd-teacher-fp32", "kd-teacher-bf16"))


def train_command(arm: str, seed: int, run_dir: Path, args) -> list[str]:
    script, *flags = ARMS[arm]
    last = run_dir / "weights" / "last.pt"
    if last.is_file() and _resumable(last):
        return [sys.executable, str(ROOT / script), "--resume", str(last)]
    cmd = [sys.executable, str(ROOT / script), *flags, "--data", args.data, "--cfg", "yolov5n.yaml", "--weights", "",
           "--img", str(args.imgsz), "--batch-size", str(args.batch), "--epochs", str(args.epochs), "--device", "cpu",
           "--workers", str(args.workers), "--seed", str(seed), "--project", str(run_dir.parent),
           "--name", run_dir.name, "--exist-ok", "--noplots"]
    if script == "train_kd.py":
        cmd += ["--teacher", str(args.teacher)]
    return cmd


def _resumable(last: Path) -> bool:
    from utils import checkpoint

    return checkpoint.safe_load(last).get("optimizer") is not None  # stripped = finished


def evaluate(weights: Path, args, save_dir: Path) -> dict:
    """val.py in FP32 on the run's best.pt (the same evaluation for every arm)."""
    import val

    (mp, mr, map50, map_, *_), _, _ = val.run(data=args.data, weights=str(weights), batch_size=32, imgsz=args.imgsz,
                                              device="cpu", workers=args.workers, half=False, plots=False,
                                              project=str(save_dir), name="val_fp32", exist_ok=True)
    return {"precision": float(mp), "recall": float(mr), "mAP50": float(map50), "mAP50-95": float(map_)}


def run_one(arm: str, seed: int, args) -> dict | None:
    out = args.results / f"{arm}-seed{seed}.json"
    if out.is_file():
        print(f"{arm} seed {seed}: done ({out.name}), skipped", flush=True)
        return json.loads(out.read_text())
    run_dir = args.runs / arm / f"seed{seed}"
    best = run_dir / "weights" / "best.pt"
    if not (best.is_file() and not _resumable(run_dir / "weights" / "last.pt")):
        cmd = train_command(arm, seed, run_dir, args)
        print(f"{arm} seed {seed}: {' '.join(cmd)}", flush=True)
        start = time.time()
        log = run_dir.parent / f"{run_dir.name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a") as f:
            code = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT, env=os.environ)
        if code:
            print(f"{arm} seed {seed}: exit {code}, see {log}", flush=True)
            return None
        train_s = time.time() - start
    else:
        train_s = float("nan")
    summary = {"arm": arm, "seed": seed, "epochs": args.epochs, "imgsz": args.imgsz, "train_seconds": train_s,
               **evaluate(best, args, run_dir)}
    args.results.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=1))
    return summary


def _stats(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else float("nan"))


def report(args) -> str:
    rows = [json.loads(f.read_text()) for f in sorted(args.results.glob("*-seed*.json"))]
    by_arm = {arm: [r for r in rows if r["arm"] == arm] for arm in ARMS}
    lines = ["| arm | seeds | mAP50 | mAP50-95 |", "|---|---|---|---|"]
    stats = {}
    for arm, runs in by_arm.items():
        if not runs:
            lines.append(f"| {arm} | 0 | pending | pending |")
            continue
        stats[arm] = {k: _stats([r[k] for r in runs]) for k in ("mAP50", "mAP50-95")}
        cells = [f"{m:.4f} ± {s:.4f}" for m, s in stats[arm].values()]
        lines.append(f"| {arm} | {len(runs)} ({', '.join(str(r['seed']) for r in runs)}) | {cells[0]} | {cells[1]} |")
    lines.append("")
    for ref, low in PAIRS:
        if ref not in stats or low not in stats or min(len(by_arm[ref]), len(by_arm[low])) < 3:
            lines.append(f"- {low} vs {ref}: pending (needs >= 3 seeds in each)")
            continue
        verdicts = []
        for key in ("mAP50", "mAP50-95"):
            (m_ref, s_ref), (m_low, s_low) = stats[ref][key], stats[low][key]
            agree = abs(m_low - m_ref) <= min(s_ref, s_low)
            verdicts.append(f"{key} {m_low - m_ref:+.4f} ({'within' if agree else 'outside'} one std)")
        lines.append(f"- {low} vs {ref}: " + "; ".join(verdicts))
    text = "\n".join(lines) + "\n"
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "report.md").write_text(text)
    return text


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser("bf16 vs FP32 accuracy on BCCD", add_help=add_help)
    p.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--data", default=str(ROOT / "data" / "BCCD.yaml"))
    p.add_argument("--teacher", type=Path, default=TEACHER)
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--imgsz", type=int, default=320)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--runs", type=Path, default=ROOT / "benchmarks" / "runs" / "bf16_accuracy")
    p.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results" / "bf16_accuracy")
    p.add_argument("--report-only", action="store_true")
    p.add_argument("--quick", action="store_true", help="1 epoch at 64 px, batch 8: checks the pipeline only")
    return p


def main(args: argparse.Namespace) -> str:
    if args.quick:
        args.epochs, args.imgsz, args.batch, args.workers = 1, 64, 8, 0
    if not args.report_only:
        from utils import amp

        native, why = amp.cpu_bf16_support()
        print(f"native bf16: {native} ({why})", flush=True)
        for arm in args.arms:  # arm by arm: a partial protocol still gives whole arms
            if arm.endswith("bf16") and not native:
                print(f"{arm}: skipped, no native bf16 on this CPU (the run would silently be FP32)", flush=True)
                continue
            for seed in args.seeds:
                run_one(arm, seed, args)
    text = report(args)
    print(text)
    return text


if __name__ == "__main__":
    main(get_args_parser().parse_args())
