"""Controlled distillation benchmark, one driver for every dataset: no-teacher arms vs FGFI, CILF, FGD (+ more).

    DATASETS_DIR=../shared/datasets python benchmarks/kd_bench.py --bench bccd      # issue 10 (= kd_bccd.py)
    DATASETS_DIR=../shared/datasets python benchmarks/kd_bench.py --bench nwpu --jobs 2 --threads 1  # issue 21
    python benchmarks/kd_bench.py --bench nwpu --arms baseline control --seeds 0     # a part of it
    python benchmarks/kd_bench.py --bench nwpu --report-only                          # rebuild the report
    python benchmarks/kd_bench.py --bench nwpu --quick --results /tmp/r --runs /tmp/runs   # the pipeline, tiny (CI)

A preset (benchmarks/kd_presets.py) is a dataset's protocol: data, models, image size, batch, epochs, seeds,
the arms and their options, the teacher (a shared checkpoint, or trained here first). Every flag below
defaults to it. BCCD (issue 10): yolov5n from scratch, 320 px, batch 16, 60 epochs, SGD, CPU, FP32, the
shared teacher ``bccd-yolov5s-320.pt``. NWPU (issue 21, seed 2's protocol): a yolov5s teacher trained here,
yolov5n students, both from scratch, 512 px, batch 32, 150 epochs, autocast on (bf16 on a CPU; ``--amp`` /
``--no-amp`` are in every recorded command), ``--device ''`` (CUDA where there is one), best.pt evaluated on
the 130 val images at IoU 0.6. Arms:

- ``baseline``: ``hyp.scratch-low``.
- ``control``: the detection-loss gains x2 (box, obj, cls), no teacher: a larger effective step alone.
- ``tuned``: the best no-teacher recipe found (the preset's ``tuned``: the control's gains with lr0 0.02;
  ``--tuned``: ``control`` or other ``key=value,...`` overrides of scratch-low, which then need a ``--variant``).
- the KD arms (BCCD: ``fgfi``, ``cilf``, ``fgd``, ``combo``; NWPU: ``fgfi``, ``cilf``, ``fgd`` at our default,
  ``fgdseed2`` at seed 2's setting on the x2 control): train_kd.py on top of the ``--kd-base`` recipe (default
  ``tuned``, or the preset's per-arm base), with the teacher (``--teacher``; ``--train-teacher`` trains a
  ``--teacher-cfg`` model with train.py first, on ``--teacher-recipe`` for ``--teacher-epochs`` with
  ``--teacher-seed``, and the KD runs are then named ``<arm>@<setting>-T<teacher>``, plus ``-s<seed>`` for a
  teacher seed other than 0) and the per-method options of the preset (or ``--fgd-args`` etc.).

Every run is a subprocess of train.py / train_kd.py with its own directory ``<runs>/<arm>/seed<k>`` (gitignored);
its summary goes to ``<results>/<bench>/<arm>-seed<k>.json`` (committed). A run whose JSON exists is skipped; an
interrupted one (``weights/last.pt``, fewer epochs in results.csv than asked) is resumed with ``--resume
<last.pt>``; a finished one without JSON is only evaluated. ``--jobs 2 --threads 1`` runs two at a time with one
thread each (the teacher and the no-teacher arms first, the KD arms once the teacher exists); a run's
``driver.lock`` keeps two drivers started side by side off the same run. Seconds per epoch come from the times
at which results.csv grows (polled each second, ``epoch_times.txt`` in the run directory), without the first
epoch of each attempt (start-up). The report is ``<results>/<bench>.{md,csv,png}``.
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import os
import shlex
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
for _p in (ROOT, ROOT / "benchmarks"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from kd_presets import BENCHES, GAINS_X2, NO_TEACHER, SHARED, Bench  # noqa: E402

LOGGER = logging.getLogger("kd_bench")
EVAL_LOCK = threading.Lock()  # val.run in-process: one evaluation at a time when runs go in parallel


# --------------------------------------------------------------------------------------------- recipes / hyps
def parse_overrides(spec: str) -> dict[str, float]:
    """'box=0.1,lr0=0.02' -> {'box': 0.1, 'lr0': 0.02} (numbers only)."""
    out = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        key, _, value = item.partition("=")
        if not _:
            raise ValueError(f"hyp override {item!r} is not key=value")
        out[key.strip()] = float(value)
    return out


def recipe_overrides(recipe: str, tuned: str) -> dict[str, float]:
    """Hyp overrides over hyp.scratch-low of a no-teacher recipe name."""
    if recipe == "baseline":
        return {}
    if recipe == "control":
        return dict(GAINS_X2)
    if recipe == "tuned":
        return dict(GAINS_X2) if tuned == "control" else parse_overrides(tuned)
    raise ValueError(f"unknown no-teacher recipe {recipe!r}")


def hyp_name(overrides: dict[str, float]) -> str:
    """A file name that says what the recipe is: 'control' for the gains x2, else the overrides ('lr00.02-box0.1')."""
    if overrides == GAINS_X2:
        return "control"
    return "-".join(f"{k}{v:g}" for k, v in overrides.items())


def write_hyp(hyp_dir: Path, overrides: dict[str, float], generator: str = "benchmarks/kd_bccd.py") -> Path:
    """hyp.scratch-low with ``overrides``, as ``<hyp_dir>/hyp.<hyp_name>.yaml`` (baseline uses the original).
    The name follows the content, so two recipes never share (and overwrite) one file."""
    base = ROOT / "data" / "hyps" / "hyp.scratch-low.yaml"
    if not overrides:
        return base
    name = hyp_name(overrides)
    hyp = yaml.safe_load(base.read_text())
    unknown = set(overrides) - set(hyp)
    if unknown:
        raise ValueError(f"unknown hyperparameters {sorted(unknown)}")
    hyp.update(overrides)
    hyp_dir.mkdir(parents=True, exist_ok=True)
    path = hyp_dir / f"hyp.{name}.yaml"
    text = (f"# generated by {generator}: hyp.scratch-low.yaml with {overrides}\n"
            + yaml.safe_dump(hyp, sort_keys=False))
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path


def rel(path: Path | str) -> str:
    """Path relative to the repo root where possible (commands in the report stay short and portable)."""
    path = Path(path).resolve()
    if path.is_relative_to(ROOT.parent):  # the repo and ../shared
        return os.path.relpath(path, ROOT)
    return str(path)


# --------------------------------------------------------------------------------------------- quick subset
def quick_dataset(tmp: Path, data: str, quick: dict) -> Path:
    """A small BCCD subset: yaml + txt lists of the first images of train and val, labels from the VOC cache."""
    from data.config import check_dataset

    d = check_dataset(str(ROOT / data) if (ROOT / data).exists() else data)
    tmp.mkdir(parents=True, exist_ok=True)
    out = {"path": str(tmp), "names": d["names"], "labels": d["labels"]}
    for split, n in (("train", quick["train_images"]), ("val", quick["val_images"])):
        lines = [s for s in Path(d[split]).read_text().splitlines() if s.strip()][:n]
        (tmp / f"{split}.txt").write_text("\n".join(lines) + "\n")
        out[split] = f"{split}.txt"
    path = tmp / "BCCD-quick.yaml"
    path.write_text(yaml.safe_dump(out, sort_keys=False))
    return path


def nwpu_quick_dataset(tmp: Path, quick: dict) -> Path:
    """The first images of the published NWPU folder (under DATASETS_DIR), converted by nwpu2yolo into ``tmp``
    with the usual seeded split: a yaml over train_images + val_images of them. The source is only read."""
    from data.config import datasets_dir
    from data.scripts import nwpu2yolo

    src = datasets_dir() / nwpu2yolo.SOURCE_NAME
    if not (src / nwpu2yolo.POSITIVE).is_dir():
        raise SystemExit(nwpu2yolo.missing_source_message([src]))
    n = quick["train_images"] + quick["val_images"]
    subset = tmp / "source"
    for sub in (nwpu2yolo.POSITIVE, nwpu2yolo.TRUTH):
        (subset / sub).mkdir(parents=True, exist_ok=True)
    for im in sorted((src / nwpu2yolo.POSITIVE).glob("*.jpg"))[:n]:  # symlinks: nothing copied
        for f, link in ((im, subset / nwpu2yolo.POSITIVE / im.name),
                        (src / nwpu2yolo.TRUTH / f"{im.stem}.txt", subset / nwpu2yolo.TRUTH / f"{im.stem}.txt")):
            if not link.exists():
                link.symlink_to(f.resolve())
    out = tmp / "NWPU-quick"
    nwpu2yolo.convert(subset, out, val_fraction=quick["val_images"] / n)
    cfg = {"path": str(out), "train": "images/train", "val": "images/val", "names": dict(enumerate(nwpu2yolo.NAMES))}
    path = tmp / "NWPU-quick.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


# --------------------------------------------------------------------------------------------- runs
def results_rows(run_dir: Path) -> list[dict[str, str]]:
    path = run_dir / "results.csv"
    if not path.exists():
        return []
    with open(path) as f:
        return [{k.strip(): v.strip() for k, v in row.items()} for row in csv.DictReader(f)]


def train_command(args, arm: str, seed: int, run_dir: Path, hyp: Path, data: str, teacher: Path | None) -> list[str]:
    bench: Bench = args.bench
    script = "train.py" if arm in NO_TEACHER or arm == "teacher" else "train_kd.py"
    cmd = [sys.executable, script, "--data", data, "--cfg", args.teacher_cfg if arm == "teacher" else bench.student_cfg,
           "--weights", "", "--hyp", rel(hyp), "--img", str(args.imgsz), "--batch-size", str(args.batch),
           "--epochs", str(args.epochs), "--workers", str(args.workers), "--device", args.device, "--seed", str(seed),
           "--project", rel(run_dir.parent), "--name", run_dir.name, "--exist-ok"]
    if args.noautoanchor:
        cmd.append("--noautoanchor")
    if args.noplots:
        cmd.append("--noplots")
    if arm in bench.kd_arms:
        cmd += ["--teacher", rel(teacher), *shlex.split(getattr(args, f"{arm}_args"))]
    extra = shlex.split(args.extra_args)
    if "--amp" not in extra and "--no-amp" not in extra:  # BCCD is FP32 (the CPU default when it began)
        cmd.append("--amp" if bench.amp else "--no-amp")
    return cmd + extra


def run_label(arm: str, variant: str | None, teacher_tag: str = "", bench: Bench = BENCHES["bccd"]) -> str:
    """'fgd@x0.1' for a variant of an arm (a tuning candidate). Without one, the tuned and KD arms are named after
    their default setting ('tuned@x2-lr0.02', 'fgd@x0.03-lr0.02'), baseline and control after themselves. A KD
    arm taught by a teacher trained here (--train-teacher) carries its tag: 'fgd@x0.03-lr0.02-Ttuned-e100'."""
    variant = variant or (bench.tuned_variant if arm == "tuned" else bench.kd_variant.get(arm))
    if arm in bench.kd_arms:
        variant += teacher_tag
    return f"{arm}@{variant}" if variant else arm


def teacher_tag(variant: str | None, seed: int) -> str:
    """Suffix of the KD runs taught by a teacher trained here: '-Ttuned-e100', '-Ttuned-e100-s1' for seed 1."""
    return f"-T{variant or 'yolov5s'}" + (f"-s{seed}" if seed else "")


def teacher_variant(args) -> str | None:
    """Run name of a teacher trained by --train-teacher: None (label 'teacher') for the shared teacher's recipe
    (baseline, --epochs), else '<recipe>-e<epochs>'."""
    epochs = args.teacher_epochs or args.epochs
    if args.teacher_recipe == "baseline" and epochs == args.epochs:
        return None
    return f"{args.teacher_recipe}-e{epochs}"


def check_variant(args) -> None:
    """Options other than the protocol's (KD_ARGS, TUNED, KD on the tuned recipe) need their own --variant name, or
    their runs would pass for the arm's."""
    if args.variant:
        return
    bench: Bench = args.bench
    custom = [a for a in args.arms if a in bench.kd_arms and getattr(args, f"{a}_args") != bench.kd_args[a]]
    if custom:
        raise SystemExit(f"--{custom[0]}-args differs from the arm's default; name the candidate with --variant NAME")
    if any(a in bench.kd_arms for a in args.arms) and (args.kd_base != "tuned" or args.tuned != bench.tuned):
        raise SystemExit("KD arms on a recipe other than the tuned one (--kd-base, --tuned) need --variant NAME")
    if (any(a in bench.kd_arms for a in args.arms) and not args.train_teacher
            and (bench.teacher is None or args.teacher.resolve() != bench.teacher.resolve())):
        raise SystemExit("KD arms with another --teacher need --variant NAME (--train-teacher names its own)")
    if "tuned" in args.arms and args.tuned not in (bench.tuned, "control"):
        raise SystemExit(f"--tuned {args.tuned!r} is not the protocol's ({bench.tuned}); name it with --variant NAME")


def display(cmd: list[str], env_prefix: str) -> str:
    return env_prefix + shlex.join(["python", *cmd[1:]])


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


def evaluate(weights: Path, data: str, imgsz: int, split: str, save_dir: Path, device: str = "cpu") -> dict:
    """val.py (its run()) on ``weights``: P, R, mAP50, mAP50-95 and seconds."""
    import val

    if not Path(data).is_absolute() and (ROOT / data).exists():
        data = str(ROOT / data)
    with EVAL_LOCK:
        t0 = time.time()
        (mp, mr, map50, map_, *_), maps, _ = val.run(data=data, weights=str(weights), batch_size=32, imgsz=imgsz,
                                                     task=split, device=device, workers=0, project=save_dir.parent,
                                                     name=save_dir.name, exist_ok=True, plots=False)
    return {"precision": mp, "recall": mr, "mAP50": map50, "mAP50-95": map_, "per_class_mAP50-95": list(map(float, maps)),
            "val_seconds": time.time() - t0}


def val_command(weights: Path, data: str, imgsz: int, split: str, env_prefix: str, device: str = "cpu") -> str:
    return env_prefix + shlex.join(["python", "val.py", "--data", data, "--weights", rel(weights), "--img", str(imgsz),
                                    "--batch-size", "32", "--task", split, "--device", device, "--workers", "0"])


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


def do_run(args, arm: str, seed: int, hyp: Path, overrides: dict, data: str, teacher: Path | None, env: dict,
           env_prefix: str) -> dict | None:
    """Train (fresh, resumed or not at all) and evaluate one arm/seed; write and return its summary (None when
    it failed, or when another driver holds it)."""
    label = run_label(arm, args.variant, args.teacher_tag, args.bench)
    out = args.results / args.bench.name / f"{label}-seed{seed}.json"
    if out.exists():
        LOGGER.info(f"{label} seed {seed}: done ({rel(out)}), skipped")
        return json.loads(out.read_text())
    run_dir = args.runs / label / f"seed{seed}"
    with RunLock(run_dir) as lock:
        if not lock.held:
            LOGGER.warning(f"{label} seed {seed}: another driver (pid {lock.owner}) is running it, skipped here")
            return None
        return _train_and_summarise(args, arm, seed, label, run_dir, out, hyp, overrides, data, teacher, env,
                                    env_prefix)


def _train_and_summarise(args, arm, seed, label, run_dir, out, hyp, overrides, data, teacher, env, env_prefix):
    from distill.teacher import file_sha256

    cmd = train_command(args, arm, seed, run_dir, hyp, data, teacher)
    last = run_dir / "weights" / "last.pt"
    done = len(results_rows(run_dir))
    if done < args.epochs:
        if last.exists() and done > 0:
            resume = [sys.executable, cmd[1], "--resume", rel(last)]
            LOGGER.info(f"{label} seed {seed}: resuming after epoch {done} from {rel(last)}")
            rc = run_training(resume, run_dir, env)
        else:
            LOGGER.info(f"{label} seed {seed}: training ({display(cmd, env_prefix)})")
            rc = run_training(cmd, run_dir, env)
        done = len(results_rows(run_dir))
        if rc != 0 or done < args.epochs:
            LOGGER.error(f"{label} seed {seed}: train exited with {rc} after {done}/{args.epochs} epochs, "
                         f"see {rel(run_dir / 'train.log')}")
            return None
    best = run_dir / "weights" / "best.pt"
    metrics = evaluate(best if best.exists() else last, data, args.imgsz, args.split, run_dir / "val", args.device)
    rows = results_rows(run_dir)
    kd = arm in args.bench.kd_arms
    summary = {
        "arm": arm, "variant": label.partition("@")[2] or None, "label": label, "extra_args": args.extra_args, "seed": seed,
        "epochs": args.epochs, "imgsz": args.imgsz, "batch": args.batch,
        "workers": args.workers, "threads": args.threads or None, "split": args.split, "hyp": rel(hyp), "hyp_overrides": overrides,
        "teacher": rel(teacher) if kd else None, "teacher_sha256": file_sha256(teacher) if kd else None,
        "command": display(cmd, env_prefix),
        "val_command": val_command(best, data, args.imgsz, args.split, env_prefix, args.device),
        **{k: metrics[k] for k in ("precision", "recall", "mAP50", "mAP50-95", "per_class_mAP50-95")},
        **epoch_timing(run_dir), "val_seconds": metrics["val_seconds"],
        "per_epoch_mAP50-95": [float(r["metrics/mAP_0.5:0.95"]) for r in rows],
        "per_epoch_mAP50": [float(r["metrics/mAP_0.5"]) for r in rows],
        "best_epoch": max(range(len(rows)), key=lambda i: 0.1 * float(rows[i]["metrics/mAP_0.5"])
                          + 0.9 * float(rows[i]["metrics/mAP_0.5:0.95"])) if rows else None,
        "kd_diagnostic": kd_diagnostic(run_dir),
        "run_dir": rel(run_dir),
    }
    summary["total_seconds"] = summary["train_seconds"] + summary["val_seconds"]
    write_atomic(out, json.dumps(summary, indent=1) + "\n")
    LOGGER.info(f"{label} seed {seed}: mAP50 {summary['mAP50']:.3f} mAP50-95 {summary['mAP50-95']:.3f}, "
                f"{summary['seconds_per_epoch']:.1f} s/epoch -> {rel(out)}")
    return summary


def load_teachers(results: Path, bench: Bench) -> list[dict]:
    """The teachers' val metrics, <results>/<bench>/teacher.json: a list, one entry per teacher file."""
    path = results / bench.name / "teacher.json"
    if not path.exists():
        return []
    cached = json.loads(path.read_text())
    return [cached] if isinstance(cached, dict) else cached  # a dict: the single-teacher format of the first runs


def teacher_metrics(args, teacher: Path, data: str, env_prefix: str) -> dict:
    """val.py on the teacher (cached in <results>/<bench>/teacher.json, keyed by file, size and split)."""
    from distill.teacher import file_sha256

    key = {"teacher": rel(teacher), "sha256": file_sha256(teacher), "imgsz": args.imgsz, "split": args.split}
    teachers = load_teachers(args.results, args.bench)
    for cached in teachers:
        if all(cached.get(k) == v for k, v in key.items()):
            return cached
    metrics = evaluate(teacher, data, args.imgsz, args.split, args.runs / "teacher-val", args.device)
    out = {**key, **metrics, "val_command": val_command(teacher, data, args.imgsz, args.split, env_prefix, args.device)}
    teachers = [t for t in load_teachers(args.results, args.bench) if t["teacher"] != key["teacher"]] + [out]
    write_atomic(args.results / args.bench.name / "teacher.json", json.dumps(teachers, indent=1) + "\n")
    return out


# --------------------------------------------------------------------------------------------- report
def mean_std(values: list[float]) -> tuple[float, float]:
    n = len(values)
    if not n:
        return float("nan"), float("nan")
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else float("nan")
    return mean, std


def fmt(mean: float, std: float, digits: int = 3) -> str:
    if math.isnan(mean):
        return "–"
    return f"{mean:.{digits}f}" + ("" if math.isnan(std) else f" ± {std:.{digits}f}")


def signed(x: float, scale: float = 100.0) -> str:
    return "–" if math.isnan(x) else f"{x * scale:+.1f}"


def load_summaries(results: Path, bench: Bench) -> dict[str, list[dict]]:
    """{label: runs sorted by seed}, labels in arm order, each arm before its variants."""
    by_label: dict[str, list[dict]] = {}
    for path in sorted((results / bench.name).glob("*-seed*.json")):
        s = json.loads(path.read_text())
        by_label.setdefault(s.get("label", s["arm"]), []).append(s)
    arms = bench.arms
    order = sorted(by_label, key=lambda lb: (arms.index(lb.split("@")[0]) if lb.split("@")[0] in arms else len(arms),
                                             "@" in lb, lb))
    return {lb: sorted(by_label[lb], key=lambda s: s["seed"]) for lb in order}


def is_no_teacher_recipe(runs: list[dict]) -> bool:
    """A candidate for 'best no-teacher': a no-teacher arm trained as the recipe says (FP32, no extra flags)."""
    return runs[0]["arm"] in NO_TEACHER and not runs[0].get("extra_args")


def in_progress(runs: Path | None, by_arm: dict, bench: Bench) -> list[str]:
    """Markdown lines for run directories without a summary JSON (epochs done, best mAP50-95 so far)."""
    if runs is None or not runs.is_dir():
        return []
    lines = []
    for label_dir in sorted(p for p in runs.iterdir() if p.is_dir() and p.name.split("@")[0] in bench.arms):
        arm = label_dir.name
        done = {r["seed"] for r in by_arm.get(arm, [])}
        for run_dir in sorted(label_dir.glob("seed*")):
            seed = run_dir.name[4:]
            if not seed.isdigit() or int(seed) in done:
                continue
            rows = results_rows(run_dir)
            best = max((float(r["metrics/mAP_0.5:0.95"]) for r in rows), default=float("nan"))
            timing = epoch_timing(run_dir)
            lines.append(f"| {arm} | {seed} | {len(rows)} | {best:.3f} | {timing['seconds_per_epoch']:.1f} "
                         f"| `{rel(run_dir / 'weights' / 'last.pt')}` |")
    if not lines:
        return []
    return ["", "## Runs not finished when this report was built (from the local run directories)", "",
            "| arm | seed | epochs done | best val mAP50-95 so far (EMA, during training) | s/epoch | resume from |",
            "|---|---|---|---|---|---|", *lines]


def arm_table(labels: list[str], stats: dict) -> list[str]:
    lines = ["| arm | seeds | mAP50 | mAP50-95 | Δ vs best no-teacher | Δ vs baseline | Δ50 vs best no-teacher "
             "| gap closed (vs best no-teacher / baseline) | s/epoch mean / median / fastest | total s/run |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for arm in labels:
        st = stats[arm]
        lines.append(f"| {arm} | {st['n']} ({','.join(map(str, st['seeds']))}) | {fmt(st['mAP50'], st['mAP50_std'])} "
                     f"| {fmt(st['mAP50-95'], st['mAP50-95_std'])} | {signed(st['gain_best_nt'])} "
                     f"| {signed(st['gain_baseline'])} | {signed(st['gain50_best_nt'])} "
                     f"| {signed(st['gap_closed_best_nt'], 100)}% / {signed(st['gap_closed_baseline'], 100)}% "
                     f"| {st['s_per_epoch']:.1f} / {st['median_s_per_epoch']:.1f} / {st['min_s_per_epoch']:.1f} "
                     f"| {st['total_s']:.0f} |")
    return lines


def build_report(results: Path, notes: str = "", runs_dir: Path | None = None, bench: Bench = BENCHES["bccd"]) -> Path:
    """<bench>.md / .csv / .png from the per-run JSONs under <results>/<bench>/ (plus, when ``runs_dir`` is given,
    a table of the unfinished runs found there)."""
    by_arm = load_summaries(results, bench)
    teachers = {t["teacher"]: t for t in load_teachers(results, bench)}
    shared = rel(bench.teacher) if bench.teacher else None
    # the shared teacher (or the only one) is the reference of the no-teacher arms' gap and of the figure
    teacher = teachers.get(shared) or next(iter(teachers.values()), None)
    stats = {}
    for arm, runs in by_arm.items():
        m50, s50 = mean_std([r["mAP50"] for r in runs])
        m, s = mean_std([r["mAP50-95"] for r in runs])
        spe, _ = mean_std([r["seconds_per_epoch"] for r in runs if not math.isnan(r["seconds_per_epoch"])])
        fastest = min((r.get("min_seconds_per_epoch", float("nan")) for r in runs), default=float("nan"))
        median, _ = mean_std([r.get("median_seconds_per_epoch", float("nan")) for r in runs])
        tot, _ = mean_std([r["total_seconds"] for r in runs])
        stats[arm] = {"n": len(runs), "seeds": [r["seed"] for r in runs], "mAP50": m50, "mAP50_std": s50,
                      "mAP50-95": m, "mAP50-95_std": s, "s_per_epoch": spe, "median_s_per_epoch": median, "min_s_per_epoch": fastest, "total_s": tot,
                      "run_s": sum(r["total_seconds"] for r in runs),
                      "cpu_s": sum(r["total_seconds"] * (r.get("threads") or 2) for r in runs)}
    no_teacher = {a: stats[a] for a in stats if is_no_teacher_recipe(by_arm[a])}
    best_nt = max(no_teacher, key=lambda a: no_teacher[a]["mAP50-95"]) if no_teacher else None
    for arm, st in stats.items():
        own = teachers.get(by_arm[arm][0].get("teacher") or "", teacher)  # a KD arm's gap is to its own teacher
        t_map = own["mAP50-95"] if own and by_arm[arm][0]["arm"] != "teacher" else float("nan")
        ref = stats[best_nt]["mAP50-95"] if best_nt else float("nan")
        base = stats["baseline"]["mAP50-95"] if "baseline" in stats else float("nan")
        st["gain_best_nt"] = st["mAP50-95"] - ref
        st["gain_baseline"] = st["mAP50-95"] - base
        st["gain50_best_nt"] = st["mAP50"] - (stats[best_nt]["mAP50"] if best_nt else float("nan"))
        st["gain50_baseline"] = st["mAP50"] - (stats["baseline"]["mAP50"] if "baseline" in stats else float("nan"))
        st["gap_closed_best_nt"] = (st["mAP50-95"] - ref) / (t_map - ref) if t_map - ref > 0 else float("nan")
        st["gap_closed_baseline"] = (st["mAP50-95"] - base) / (t_map - base) if t_map - base > 0 else float("nan")

    csv_path = results / f"{bench.name}.csv"
    columns = ["arm", "n", "seeds", "mAP50", "mAP50_std", "mAP50-95", "mAP50-95_std", "gain_best_nt",
               "gain_baseline", "gain50_best_nt", "gain50_baseline", "gap_closed_best_nt", "gap_closed_baseline",
               "s_per_epoch", "median_s_per_epoch", "min_s_per_epoch", "total_s", "run_s", "cpu_s"]
    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(columns)
        for arm, st in stats.items():
            w.writerow([arm] + [" ".join(map(str, st[c])) if c == "seeds" else
                                (f"{st[c]:.5g}" if isinstance(st[c], float) else st[c]) for c in columns[1:]])
        for t in teachers.values():
            name = "teacher" if t is teacher else f"teacher {t['teacher']}"
            w.writerow([name, 1, "", f"{t['mAP50']:.5g}", "", f"{t['mAP50-95']:.5g}"] + [""] * (len(columns) - 6))

    lines = [bench.title, "",
             f"Generated by `{bench.generator}` from the per-run JSONs in `benchmarks/results/{bench.name}/` "
             "(`--report-only` rebuilds it). mAP by val.py on each run's best.pt; mean ± sample std over seeds. "
             "Gains are in mAP points (x100) of mAP50-95 unless marked 50; *best no-teacher* is "
             f"**{best_nt or '–'}** (the no-teacher arm with the highest mean mAP50-95 so far). Gap closed = "
             "(arm - reference) / (teacher - reference) in mAP50-95, with the arm's own teacher.", ""]
    for t in teachers.values():
        lines += [f"{'Teacher' if t is teacher else 'Teacher of the `-T...` arms'} `{t['teacher']}` on {t['split']} "
                  f"at {t['imgsz']} px: mAP50 {t['mAP50']:.3f}, mAP50-95 {t['mAP50-95']:.3f} "
                  f"(`{t['val_command']}`).", ""]
    main_labels = bench.main_labels
    main = [lb for lb in stats if lb in main_labels]
    amp = "bf16 on the CPU, fp16 on CUDA" if bench.amp else "off (FP32)"
    lines += ["## Arms", "", bench.arms_intro.format(tuned=bench.tuned, tuned_variant=bench.tuned_variant, amp=amp,
                                                      imgsz=bench.imgsz, batch=bench.batch, epochs=bench.epochs), ""]
    lines += arm_table(main, stats)
    # runs of a teacher trained here and the KD runs it taught (--train-teacher): their own table
    own = [lb for lb in stats if lb not in main_labels and (
        by_arm[lb][0]["arm"] == "teacher" or by_arm[lb][0].get("teacher") not in (None, shared))]
    if own:
        lines += ["", "## KD from a teacher trained here (`--train-teacher`)", "",
                  "`teacher@<recipe>-e<epochs>`: a yolov5s trained by train.py (its own row: its val mAP by the "
                  "same protocol); `<arm>@<setting>-T<recipe>-e<epochs>`: the KD arm's default, taught by it. Gap "
                  "closed is to that teacher.", ""]
        lines += arm_table(own, stats)
    lines += ["", "## Tuning sweep (what else was tried, same recipe and budget)", "",
              "`<arm>@<name>`: the arm with other options (its command is listed below). `@bf16` and `-tbf16` rows "
              "are the bf16 study of docs/bf16.md.", ""]
    lines += arm_table([lb for lb in stats if lb not in main_labels and lb not in own], stats)
    total_run = sum(st["run_s"] for st in stats.values())
    total_cpu = sum(st["cpu_s"] for st in stats.values())
    lines += ["", f"Total CPU cost of the runs so far: {total_run / 3600:.2f} h of run time (sum over runs), "
              f"{total_cpu / 3600:.2f} core-hours (run time x torch threads: 2 by default, 1 for `--threads 1` runs, "
              "which went two at a time on the 2 cores).", "",
              "Seconds per epoch: interval between results.csv rows (validation included, the first epoch of "
              "each attempt excluded). The 2-core machine is shared with other engineers' jobs, so the mean moves "
              "several-fold with their load; the fastest epoch is the closest to a quiet-machine figure. Compare "
              "arms as rough ratios only; `benchmarks/kd_step.py` is the controlled KD-overhead measurement.", "",
              f"![KD benchmark]({bench.name}.png)", "", "## Runs", "",
              "| arm | seed | mAP50 | mAP50-95 | best epoch | s/epoch mean / median / fastest | total s | threads |",
              "|---|---|---|---|---|---|---|---|"]
    for arm, runs in by_arm.items():
        for r in runs:
            lines.append(f"| {arm} | {r['seed']} | {r['mAP50']:.3f} | {r['mAP50-95']:.3f} | {r['best_epoch']} "
                         f"| {r['seconds_per_epoch']:.1f} / {r.get('median_seconds_per_epoch', float('nan')):.1f} / "
                         f"{r.get('min_seconds_per_epoch', float('nan')):.1f} | {r['total_seconds']:.0f} "
                         f"| {r.get('threads') or 2} |")
    lines += ["", "## Commands (seed 0 or the first seed; other seeds differ only in `--seed`)", ""]
    for arm, runs in by_arm.items():
        lines += [f"- **{arm}**: `{runs[0]['command']}`", f"  - eval: `{runs[0]['val_command']}`"]
        diag = runs[0].get("kd_diagnostic") or []
        for d in diag:
            lines.append(f"  - diagnostic: `{d}`")
    lines += in_progress(runs_dir, by_arm, bench)
    if notes:
        lines += ["", notes.strip()]
    md_path = results / f"{bench.name}.md"
    md_path.write_text("\n".join(lines) + "\n")
    plot_report({lb: by_arm[lb] for lb in main}, {lb: stats[lb] for lb in main}, teacher, results / f"{bench.name}.png")
    return md_path


def plot_report(by_arm: dict, stats: dict, teacher: dict | None, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.8))
    arms = list(stats)
    if not arms:
        ax1.text(0.5, 0.5, "no finished runs yet", ha="center", transform=ax1.transAxes)
    x = np.arange(len(arms))
    for k, (key, label) in enumerate((("mAP50", "mAP50"), ("mAP50-95", "mAP50-95"))):
        means = [stats[a][key] for a in arms]
        stds = [0 if math.isnan(stats[a][f"{key}_std"]) else stats[a][f"{key}_std"] for a in arms]
        ax1.bar(x + (k - 0.5) * 0.38, means, 0.38, yerr=stds, capsize=3, label=label)
        if teacher:
            ax1.axhline(teacher[key], ls="--", lw=1, color=f"C{k}", label=f"teacher {label}")
    ax1.set_xticks(x, arms, rotation=20)
    ax1.set_xlim(-0.7, max(len(arms), 4) - 0.3)  # bars keep their width with few arms
    ax1.set_ylabel("val mAP (mean ± std over seeds)")
    ax1.set_ylim(0, 1)
    if ax1.get_legend_handles_labels()[0]:
        ax1.legend(fontsize=8, loc="lower right")
    ax1.set_title("final val mAP per arm")
    for i, arm in enumerate(arms):
        curves = [r["per_epoch_mAP50-95"] for r in by_arm[arm] if r["per_epoch_mAP50-95"]]
        if not curves:
            continue
        n = min(map(len, curves))
        arr = np.array([c[:n] for c in curves])
        mean = arr.mean(0)
        ax2.plot(np.arange(n), mean, color=f"C{i}", label=f"{arm} ({len(curves)})")
        if len(curves) > 1:
            ax2.fill_between(np.arange(n), arr.min(0), arr.max(0), color=f"C{i}", alpha=0.15)
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("val mAP50-95 during training (EMA)")
    ax2.set_title("per-epoch mAP50-95 (mean over seeds, band = min..max)")
    if ax2.get_legend_handles_labels()[0]:
        ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------------------------- main
def get_args_parser(bench: Bench = BENCHES["bccd"]) -> argparse.ArgumentParser:
    """The driver's flags, their defaults from the ``bench`` preset (``--bench`` picks it, see ``main``)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bench", choices=tuple(BENCHES), default=next(k for k, b in BENCHES.items() if b is bench),
                   help="the dataset's protocol (benchmarks/kd_presets.py): every default below comes from it")
    p.add_argument("--arms", nargs="+", choices=bench.arms, default=list(bench.arms))
    p.add_argument("--seeds", nargs="+", type=int, default=list(bench.seeds))
    p.add_argument("--epochs", type=int, default=bench.epochs)
    p.add_argument("--imgsz", "--img", type=int, default=bench.imgsz)
    p.add_argument("--batch", type=int, default=bench.batch)
    p.add_argument("--workers", type=int, default=bench.workers)
    p.add_argument("--device", default=bench.device, help="--device of every run and evaluation ('': CUDA if any)")
    p.add_argument("--threads", type=int, default=0,
                   help="OMP_NUM_THREADS for the runs (0: torch's default, one per core). On the 2-core machine shared "
                        "with another CPU job, a 2-thread FGD run went from ~0.9 to ~20 s per step (threads "
                        "waiting for each other); 1 thread may fare better there (not measured)")
    p.add_argument("--jobs", type=int, default=1,
                   help="runs at a time (e.g. --jobs 2 --threads 1 on 2 cores); a run's driver.lock keeps two "
                        "drivers started side by side off each other's runs")
    p.add_argument("--split", default="val", choices=("val", "test"), help="evaluation split (test: full download)")
    p.add_argument("--data", default=bench.data, help="dataset yaml (resolved by data.config)")
    p.add_argument("--datasets-dir", default=None,
                   help="DATASETS_DIR for the runs (default: $DATASETS_DIR, else ../shared/datasets if present)")
    p.add_argument("--teacher", type=Path, default=bench.teacher)
    p.add_argument("--train-teacher", action=argparse.BooleanOptionalAction, default=bench.teacher is None,
                   help="train a yolov5s teacher with train.py first (--teacher-seed) and distil from it; the KD runs are "
                        "then named <arm>@<setting>-T<teacher> unless it is the shared teacher's recipe "
                        "(default: on for a preset without a shared teacher)")
    p.add_argument("--teacher-recipe", default="baseline", choices=NO_TEACHER,
                   help="no-teacher recipe of --train-teacher (the shared teacher's is baseline)")
    p.add_argument("--teacher-epochs", type=int, default=None, help="epochs of --train-teacher (default --epochs)")
    p.add_argument("--teacher-seed", type=int, default=0, help="seed of --train-teacher (KD runs from a seed other "
                                                               "than 0 are named ...-T<teacher>-s<seed>)")
    p.add_argument("--teacher-cfg", default=bench.teacher_cfg, help="model yaml of --train-teacher")
    p.add_argument("--tuned", default=bench.tuned,
                   help="the tuned no-teacher recipe: hyp overrides of scratch-low, or 'control' (its runs are the "
                        "control's)")
    p.add_argument("--kd-base", default="tuned", choices=NO_TEACHER,
                   help="no-teacher recipe under the KD arms (except those the preset puts on another: "
                        f"{bench.kd_base or 'none'})")
    for arm in bench.kd_arms:
        p.add_argument(f"--{arm}-args", default=bench.kd_args[arm], help=f"train_kd.py options of the {arm} arm")
    p.add_argument("--variant", default=None,
                   help="name of a variant of the arms (a tuning candidate): runs and JSONs become <arm>@<variant>")
    p.add_argument("--extra-args", default="", help="train.py/train_kd.py options added to every run (e.g. '--amp')")
    p.add_argument("--noautoanchor", action="store_true",
                   help="pass --noautoanchor to every arm (BCCD at 320 px keeps the yaml's anchors anyway: BPR 1.0)")
    p.add_argument("--noplots", action="store_true", help="pass --noplots to every arm")
    p.add_argument("--runs", type=Path, default=ROOT / "benchmarks" / "runs" / bench.name, help="run directories")
    p.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results",
                   help=f"<results>/{bench.name}/*.json and <results>/{bench.name}.{{md,csv,png}}")
    q = bench.quick
    p.add_argument("--quick", action="store_true",
                   help=f"CI: one seed, {q['epochs']} epoch, {q['imgsz']} px, {q['train_images']}/"
                        f"{q['val_images']} train/val images, --noautoanchor --noplots")
    p.add_argument("--report-only", action="store_true", help="only rebuild the report from the JSONs")
    return p


def parse_args(argv=None) -> argparse.Namespace:
    """Two passes: ``--bench`` first, then every flag with that preset's defaults."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--bench", choices=tuple(BENCHES), default="bccd")
    known, _ = pre.parse_known_args(argv)
    bench = BENCHES[known.bench]
    args = get_args_parser(bench).parse_args(argv)
    args.bench = bench
    args.runs, args.results = args.runs.resolve(), args.results.resolve()
    return args


def run_env(args) -> tuple[dict, str]:
    """(environment of the runs, the prefix that the recorded commands carry: DATASETS_DIR, OMP_NUM_THREADS)."""
    datasets_dir = args.datasets_dir or os.environ.get("DATASETS_DIR") or (
        str(SHARED / "datasets") if (SHARED / "datasets").exists() else None)
    env = dict(os.environ)
    env_prefix = ""
    if datasets_dir:
        os.environ["DATASETS_DIR"] = env["DATASETS_DIR"] = datasets_dir
        env_prefix = f"DATASETS_DIR={rel(datasets_dir) if Path(datasets_dir).is_absolute() else datasets_dir} "
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
        env_prefix += f"OMP_NUM_THREADS={args.threads} "
    return env, env_prefix


def apply_quick(args) -> str:
    """--quick: the preset's tiny settings on a subset of its data; returns the subset's yaml."""
    q = args.bench.quick
    args.seeds = args.seeds[:1]
    args.epochs, args.imgsz, args.batch, args.workers = (q[k] for k in ("epochs", "imgsz", "batch", "workers"))
    args.teacher_cfg = q.get("teacher_cfg", args.teacher_cfg)
    args.noautoanchor = args.noplots = True
    args.teacher_epochs = None
    if args.bench.name == "kd_nwpu":
        return str(nwpu_quick_dataset(args.runs / "data", q))
    return str(quick_dataset(args.runs / "data", args.data, q))


def prepare_teacher(args, data: str, hyp_dir: Path, env: dict, env_prefix: str) -> Path | None:
    """The teacher's checkpoint: --teacher, or the best.pt of a run of --train-teacher (trained first)."""
    if not args.train_teacher:
        return args.teacher.resolve() if args.teacher else None
    t_variant = teacher_variant(args)
    t_overrides = recipe_overrides(args.teacher_recipe, args.tuned)
    t_args = argparse.Namespace(**{**vars(args), "variant": t_variant, "extra_args": "",
                                   "epochs": args.teacher_epochs or args.epochs})
    summary = do_run(t_args, "teacher", args.teacher_seed, write_hyp(hyp_dir, t_overrides, args.bench.generator),
                     t_overrides, data, None, env, env_prefix)
    if summary is None:
        raise SystemExit("teacher training failed")
    teacher = (ROOT / summary["run_dir"] / "weights" / "best.pt").resolve()
    if not teacher.is_file():  # its runs directory was lost: a retrained teacher would not be the same one
        raise SystemExit(f"the weights of the teacher {summary['label']} seed {args.teacher_seed} are gone "
                         f"({rel(teacher)}), though its summary and the KD runs it taught are kept; put them back, "
                         f"or train another teacher with --teacher-seed N (its KD runs get their own names)")
    own_protocol = args.bench.teacher is None and t_variant is None and args.teacher_seed == 0
    # a preset without a shared teacher trains its protocol's teacher here: its KD runs are the arms' own runs
    args.teacher_tag = "" if own_protocol else teacher_tag(t_variant, args.teacher_seed)
    return teacher


def arm_jobs(args, hyp_dir: Path) -> list[tuple[str, int, Path, dict]]:
    """(arm, seed, hyp, overrides) of every run asked for, arm by arm, seed by seed."""
    jobs = []
    for arm in args.arms:
        recipe = args.bench.kd_base.get(arm, args.kd_base) if arm in args.bench.kd_arms else arm
        overrides = recipe_overrides(recipe, args.tuned)
        if arm == "tuned" and overrides == GAINS_X2 and not args.variant:
            LOGGER.info("tuned: the best no-teacher recipe is the control's (--tuned control), so are its runs")
            arm = "control"
        hyp = write_hyp(hyp_dir, overrides, args.bench.generator)
        jobs += [(arm, seed, hyp, overrides) for seed in args.seeds]
    return jobs


def run_one(args, job: tuple, data: str, teacher: Path | None, env: dict, env_prefix: str) -> str | None:
    """One (arm, seed, hyp, overrides) job; returns its label when it failed, else None."""
    arm, seed, hyp, overrides = job
    if do_run(args, arm, seed, hyp, overrides, data, teacher, env, env_prefix) is not None:
        return None
    return f"{run_label(arm, args.variant, args.teacher_tag, args.bench)}/seed{seed}"


def run_all(args, data: str, hyp_dir: Path, env: dict, env_prefix: str) -> list[str]:
    """The teacher (when trained here) first, the no-teacher arms beside it, then the KD arms: ``--jobs`` runs at
    a time, in this order. Returns the labels of the failed runs."""
    bench = args.bench
    jobs = arm_jobs(args, hyp_dir)
    kd_jobs = [j for j in jobs if j[0] in bench.kd_arms]
    args.teacher_tag = ""
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        t_future = pool.submit(prepare_teacher, args, data, hyp_dir, env, env_prefix) if kd_jobs else None
        futures = [pool.submit(run_one, args, j, data, None, env, env_prefix) for j in jobs if j not in kd_jobs]
        if t_future is not None:
            teacher = t_future.result()
            if teacher is None or not teacher.is_file():
                raise SystemExit(f"teacher {teacher} not found (--teacher PATH or --train-teacher)")
            teacher_metrics(args, teacher, data, env_prefix)
            futures += [pool.submit(run_one, args, j, data, teacher, env, env_prefix) for j in kd_jobs]
        return [f for f in (fut.result() for fut in futures) if f]


def main(argv=None) -> Path:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    bench = args.bench
    notes_path = args.results / bench.name / "notes.md"
    notes = notes_path.read_text() if notes_path.exists() else ""
    if args.report_only:
        return build_report(args.results, notes, args.runs, bench)
    check_variant(args)
    env, env_prefix = run_env(args)
    data = args.data
    if args.quick:
        data, env_prefix = apply_quick(args), ""
    failed = run_all(args, data, args.results / bench.name / "hyps", env, env_prefix)
    report = build_report(args.results, notes, args.runs, bench)
    LOGGER.info(f"report: {rel(report)}" + (f"; failed: {', '.join(failed)}" if failed else ""))
    if failed:
        raise SystemExit(f"failed runs: {', '.join(failed)}")
    return report


if __name__ == "__main__":
    main()
