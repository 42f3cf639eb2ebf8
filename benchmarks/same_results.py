"""Behaviour check for refactors: fixed-seed CPU runs of train.py and train_kd.py (each method), results.csv kept.

    DATASETS_DIR=../shared/datasets python benchmarks/same_results.py --out /tmp/before      # before the change
    DATASETS_DIR=../shared/datasets python benchmarks/same_results.py --out /tmp/after       # after it
    python benchmarks/same_results.py --compare /tmp/before /tmp/after                      # every cell equal?

Each run: BCCD (yolov5n from scratch, the shared yolov5s teacher for KD), 3 epochs, 96 px, batch 8, FP32
(``--no-amp``), 0 workers, seed 0, one torch thread, no plots. The comparison is exact: a refactor that keeps the
behaviour gives the same results.csv text (the same losses, metrics and learning rates, to the digits written).
"""
from __future__ import annotations

import argparse
import filecmp
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEACHER = (ROOT / ".." / "shared" / "weights" / "bccd-yolov5s-320.pt").resolve()
COMMON = ["--data", "data/BCCD.yaml", "--cfg", "yolov5n.yaml", "--weights", "", "--img", "96", "--batch-size", "8",
          "--epochs", "3", "--workers", "0", "--device", "cpu", "--seed", "0", "--no-amp", "--noplots", "--exist-ok"]
RUNS = {
    "plain": ["train.py"],
    "fgfi": ["train_kd.py", "--teacher", str(TEACHER), "--kd", "fgfi"],
    "cilf": ["train_kd.py", "--teacher", str(TEACHER), "--kd", "cilf", "--cilf-alpha", "0.5"],
    "fgd": ["train_kd.py", "--teacher", str(TEACHER), "--kd", "fgd"],
}


def run_all(out: Path, names: list[str]) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name in names:
        script, *extra = RUNS[name]
        cmd = [sys.executable, script, *COMMON, *extra, "--project", str(out), "--name", name]
        print("$", " ".join(cmd), flush=True)
        with open(out / f"{name}.log", "w") as log:
            subprocess.run(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, check=True)


def compare(a: Path, b: Path) -> bool:
    same = True
    for name in RUNS:
        fa, fb = a / name / "results.csv", b / name / "results.csv"
        if not (fa.exists() and fb.exists()):
            print(f"{name}: missing ({fa.exists()=}, {fb.exists()=})")
            same = False
            continue
        equal = filecmp.cmp(fa, fb, shallow=False)
        print(f"{name}: {'identical' if equal else 'DIFFERENT'}")
        same &= equal
    return same


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, help="where the runs go")
    p.add_argument("--runs", nargs="+", choices=tuple(RUNS), default=list(RUNS))
    p.add_argument("--compare", nargs=2, type=Path, metavar=("A", "B"))
    args = p.parse_args()
    if args.compare:
        sys.exit(0 if compare(*args.compare) else 1)
    args.out.mkdir(parents=True, exist_ok=True)
    run_all(args.out, args.runs)


if __name__ == "__main__":
    main()
