"""Seconds per whole training epoch (train + per-epoch validation) of train.py and train_kd.py, per configuration.

    DATASETS_DIR=../shared/datasets python benchmarks/epoch_time.py                 # every case, 3 epochs each
    python benchmarks/epoch_time.py --cases plain kd-fgd --epochs 4 --json out.json

The recipe of the KD benchmark (yolov5n from scratch, BCCD train, 320 px, batch 16, 2 workers, CPU; teacher the
shared BCCD yolov5s), run for a few epochs per case, each case in its own subprocess. An epoch is timed from
the start of its training part to the end of its validation (callbacks); the first epoch is left out (start-up,
warm-up of the allocator and loader) and the median of the others is reported, with the training part alone.

Cases: ``plain`` (train.py, FP32), ``plain-bf16`` (``--amp``: bf16 autocast), ``kd-<method>`` (train_kd.py,
FP32; method fgfi, cilf, fgd or combo = fgfi+fgd), ``kd-fgd-tbf16`` (FP32 student, ``--teacher-dtype bf16``),
``kd-fgd-bf16`` (``--amp``: student and teacher in bf16). KD weights do not change the cost, so the library
defaults are used. Measure on a quiet machine: other CPU jobs change these figures several-fold.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TEACHER = (ROOT / ".." / "shared" / "weights" / "bccd-yolov5s-320.pt").resolve()
CASES = {  # the FP32 cases say amp=False: bf16 is the CPU default where native
    "plain": {"amp": False},
    "plain-bf16": {"amp": True, "amp_dtype": "bf16"},
    "kd-fgfi": {"kd": ["fgfi"], "amp": False},
    "kd-cilf": {"kd": ["cilf"], "amp": False},
    "kd-fgd": {"kd": ["fgd"], "amp": False},
    "kd-combo": {"kd": ["fgfi", "fgd"], "amp": False},
    "kd-fgd-tbf16": {"kd": ["fgd"], "amp": False, "teacher_dtype": "bf16"},
    "kd-fgd-bf16": {"kd": ["fgd"], "amp": True, "amp_dtype": "bf16"},
}


def epoch_callbacks() -> tuple:
    """Callbacks that record perf_counter marks at each epoch's start, end of training part and end of
    validation -> (callbacks, {"start": [...], "train_end": [...], "fit_end": [...]})."""
    from utils.callbacks import Callbacks

    marks: dict[str, list[float]] = {"start": [], "train_end": [], "fit_end": []}
    callbacks = Callbacks()
    callbacks.register("on_train_epoch_start", lambda: marks["start"].append(time.perf_counter()))
    callbacks.register("on_train_epoch_end", lambda epoch: marks["train_end"].append(time.perf_counter()))
    callbacks.register("on_fit_epoch_end", lambda *a: marks["fit_end"].append(time.perf_counter()))
    return callbacks, marks


def time_case(case: str, args) -> dict:
    """Train ``args.epochs`` epochs of ``case`` in this process; per-epoch seconds from the callbacks."""
    import torch

    import train
    import train_kd

    if args.threads:
        torch.set_num_threads(args.threads)
    callbacks, marks = epoch_callbacks()
    options = dict(CASES[case])
    with tempfile.TemporaryDirectory() as tmp:
        common = dict(data=args.data, cfg="yolov5n.yaml", weights="", imgsz=args.imgsz, batch_size=args.batch,
                      workers=args.workers, epochs=args.epochs, device="cpu", noplots=True, project=tmp,
                      name=case, callbacks=callbacks, **{k: v for k, v in options.items() if k != "kd"})
        if "kd" in options:
            train_kd.run(teacher=str(args.teacher), kd=options["kd"], **common)
        else:
            train.run(**common)
    epochs = [end - start for start, end in zip(marks["start"], marks["fit_end"])][1:]
    train_parts = [end - start for start, end in zip(marks["start"], marks["train_end"])][1:]
    return {"case": case, "epoch_s": statistics.median(epochs), "train_s": statistics.median(train_parts),
            "epochs_timed": len(epochs), "all_epoch_s": [round(e, 2) for e in epochs]}


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    p.add_argument("--data", default="data/BCCD.yaml")
    p.add_argument("--teacher", type=Path, default=TEACHER)
    p.add_argument("--epochs", type=int, default=3, help="epochs per case (the first is not timed)")
    p.add_argument("--imgsz", type=int, default=320)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--json", default="", help="also write the rows here")
    p.add_argument("--case", default=None, help=argparse.SUPPRESS)  # internal: one case in this process
    return p


def main(argv=None) -> list[dict]:
    args = get_args_parser().parse_args(argv)
    if args.epochs < 2:
        raise SystemExit("--epochs must be >= 2 (the first epoch is not timed)")
    if args.case:
        print(json.dumps(time_case(args.case, args)))
        return []
    rows = []
    print("| case | s / epoch (train + val), median | train part | vs plain |\n|---|---|---|---|", flush=True)
    for case in args.cases:
        argv_case = list(argv if argv is not None else sys.argv[1:]) + ["--case", case]
        out = subprocess.run([sys.executable, __file__, *argv_case], capture_output=True, text=True, cwd=ROOT)
        if out.returncode:
            raise SystemExit(f"{case} failed:\n{out.stdout[-2000:]}{out.stderr[-3000:]}")
        row = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append(row)
        plain = next((r["epoch_s"] for r in rows if r["case"] == "plain"), None)
        ratio = f"{row['epoch_s'] / plain:.2f}x" if plain else ""
        print(f"| {case} | {row['epoch_s']:.2f} | {row['train_s']:.2f} | {ratio} |", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    return rows


if __name__ == "__main__":
    main()
