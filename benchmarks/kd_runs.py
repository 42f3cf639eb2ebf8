"""Run bookkeeping of benchmarks/kd_bench.py: a training subprocess with its epoch clock, its results.csv rows,
the per-run lock that lets two drivers share a runs folder, and atomic writes of the summaries."""
from __future__ import annotations

import csv
import os
import shlex
import subprocess
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def rel(path: Path | str) -> str:
    """Path relative to the repo root where possible (commands in the report stay short and portable)."""
    path = Path(path).resolve()
    if path.is_relative_to(ROOT.parent):  # the repo and ../shared
        return os.path.relpath(path, ROOT)
    return str(path)


def results_rows(run_dir: Path) -> list[dict[str, str]]:
    path = run_dir / "results.csv"
    if not path.exists():
        return []
    with open(path) as f:
        return [{k.strip(): v.strip() for k, v in row.items()} for row in csv.DictReader(f)]


def run_training(cmd: list[str], run_dir: Path, env: dict) -> int:
    """Run ``cmd`` in the repo root, log to run_dir/train.log, record 'time rows' lines as results.csv grows."""
    run_dir.mkdir(parents=True, exist_ok=True)
    times = open(run_dir / "epoch_times.txt", "a")
    times.write(f"{time.time():.3f} start\n")
    times.flush()
    with open(run_dir / "train.log", "a") as log:
        log.write(f"\n$ {shlex.join(cmd)}\n")
        log.flush()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        last = len(results_rows(run_dir))
        try:
            while proc.poll() is None:
                time.sleep(1.0)
                n = len(results_rows(run_dir))
                if n != last:
                    times.write(f"{time.time():.3f} {n}\n")
                    times.flush()
                    last = n
        except KeyboardInterrupt:  # let train.py save last.pt, then stop
            proc.wait()
            raise
        n = len(results_rows(run_dir))
        if n != last:
            times.write(f"{time.time():.3f} {n}\n")
    times.write(f"{time.time():.3f} end\n")
    times.close()
    return proc.returncode


def epoch_timing(run_dir: Path) -> dict:
    """Seconds per epoch (mean interval between results.csv rows, first row of each attempt excluded) and the
    wall time of all attempts, from epoch_times.txt."""
    path = run_dir / "epoch_times.txt"
    intervals, total, start, prev, first_rows = [], 0.0, None, None, []
    for line in path.read_text().splitlines() if path.exists() else []:
        t, what = line.split()[:2]
        t = float(t)
        if what == "start":
            start, prev = t, None
        elif what == "end":
            if start is not None:
                total += t - start
            start = prev = None
        elif start is not None and int(what) > 0:
            if prev is not None:
                intervals.append(t - prev)
            else:
                first_rows.append(t - start)
            prev = t
    if start is not None and prev is not None:  # an attempt still running (or killed without 'end')
        total += prev - start
    ordered = sorted(intervals)
    median = ordered[len(ordered) // 2] if ordered else float("nan")
    fastest = ordered[0] if ordered else float("nan")
    if intervals:
        per_epoch = sum(intervals) / len(intervals)
    elif first_rows:
        per_epoch = sum(first_rows) / len(first_rows)
    else:
        per_epoch = float("nan")
    return {"seconds_per_epoch": per_epoch, "median_seconds_per_epoch": median, "min_seconds_per_epoch": fastest,
            "train_seconds": total, "timed_epochs": len(intervals)}


def kd_diagnostic(run_dir: Path) -> list[str]:
    path = run_dir / "train.log"
    if not path.exists():
        return []
    lines = path.read_text(errors="replace").replace("\r", "\n").splitlines()
    out = []
    for line in lines:  # the log lines share a terminal line with tqdm's bar: keep from the message on
        for key in ("KD loss magnitudes", "KD terms are"):
            if key in line:
                out.append(line[line.index(key):].strip())
    return out


def write_atomic(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so a second driver never reads half a JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class RunLock:
    """``<run_dir>/driver.lock`` holding the pid of the driver training that run, so two drivers started on
    overlapping arms (two at a time, one thread each) never train the same run; a lock whose pid is gone is
    stale and taken over (a killed driver's run resumes from last.pt)."""

    def __init__(self, run_dir: Path):
        self.path, self.held, self.owner = run_dir / "driver.lock", False, None

    def __enter__(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                self.owner = self._owner()
                if self.owner is not None and self.owner != os.getpid():
                    return self
                self.path.unlink(missing_ok=True)  # stale (or a thread of this driver died)
                continue
            os.write(fd, str(os.getpid()).encode())
            os.close(fd)
            self.held = True
            return self
        return self

    def _owner(self) -> int | None:
        try:
            pid = int(self.path.read_text().strip() or 0)
            os.kill(pid, 0)
            return pid
        except (ValueError, OSError):
            return None

    def __exit__(self, *exc) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
