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
import json
import logging
import os
import shlex
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
from kd_data import nwpu_quick_dataset, quick_dataset  # noqa: E402
from kd_report import build_report, is_no_teacher_recipe, load_teachers  # noqa: E402,F401
from kd_runs import RunLock, epoch_timing, kd_diagnostic, rel, results_rows, run_training, write_atomic  # noqa: E402,F401

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


# --------------------------------------------------------------------------------------------- runs
def train_command(args, arm: str, seed: int, run_dir: Path, hyp: Path, data: str, teacher: Path | None) -> list[str]:
    bench: Bench = args.bench
    script = "train.py" if arm in NO_TEACHER or arm == "teacher" else "train_kd.py"
    weights = bench.teacher_weights if arm == "teacher" else bench.student_weights
    cmd = [sys.executable, script, "--data", data, "--cfg", args.teacher_cfg if arm == "teacher" else bench.student_cfg,
           "--weights", rel(weights) if weights else "", "--hyp", rel(hyp), "--img", str(args.imgsz), "--batch-size", str(args.batch),
           "--epochs", str(args.epochs), "--workers", str(args.workers), "--device", args.device, "--seed", str(seed),
           "--project", rel(run_dir.parent), "--name", run_dir.name, "--exist-ok"]
    if args.noautoanchor:
        cmd.append("--noautoanchor")
    if args.noplots:
        cmd.append("--noplots")
    if bench.cache:
        cmd += ["--cache", bench.cache]
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


def teacher_tag(variant: str | None, seed: int, own_seed: int = 0) -> str:
    """Suffix of the KD runs taught by a teacher trained here: '-Ttuned-e100', '-Ttuned-e100-s1' for seed 1 (none
    for the preset's own teacher seed)."""
    return f"-T{variant or 'yolov5s'}" + (f"-s{seed}" if seed != own_seed else "")


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


class PerClassAP50:
    """val.run's ``on_val_end`` callback (upstream's arguments): keeps AP50 per class index."""

    def __init__(self):
        self.ap50: dict[int, float] = {}

    def run(self, event, nt, tp, fp, p, r, f1, ap, ap50, ap_class, cm):
        if event == "on_val_end" and ap_class is not None:
            self.ap50 = {int(c): float(a) for c, a in zip(ap_class, ap50)}


def evaluate(weights: Path, data: str, imgsz: int, split: str, save_dir: Path, device: str = "cpu") -> dict:
    """val.py (its run()) on ``weights``: P, R, mAP50, mAP50-95, per class AP50 and mAP50-95, class names, seconds."""
    import val
    from data.config import check_dataset

    if not Path(data).is_absolute() and (ROOT / data).exists():
        data = str(ROOT / data)
    per_class = PerClassAP50()
    with EVAL_LOCK:
        t0 = time.time()
        (mp, mr, map50, map_, *_), maps, _ = val.run(data=data, weights=str(weights), batch_size=32, imgsz=imgsz,
                                                     task=split, device=device, workers=0, project=save_dir.parent,
                                                     name=save_dir.name, exist_ok=True, plots=False,
                                                     callbacks=per_class)
        names = check_dataset(data)["names"]
    names = [names[i] for i in sorted(names)] if isinstance(names, dict) else list(names)
    return {"precision": mp, "recall": mr, "mAP50": map50, "mAP50-95": map_, "per_class_mAP50-95": list(map(float, maps)),
            "per_class_AP50": [per_class.ap50.get(i) for i in range(len(maps))], "class_names": names,
            "val_seconds": time.time() - t0}


def val_command(weights: Path, data: str, imgsz: int, split: str, env_prefix: str, device: str = "cpu") -> str:
    return env_prefix + shlex.join(["python", "val.py", "--data", data, "--weights", rel(weights), "--img", str(imgsz),
                                    "--batch-size", "32", "--task", split, "--device", device, "--workers", "0"])


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
        **{k: metrics[k] for k in ("precision", "recall", "mAP50", "mAP50-95", "per_class_mAP50-95", "per_class_AP50",
                                   "class_names")},
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


# --------------------------------------------------------------------------------------------- main
def get_args_parser(bench: Bench = BENCHES["bccd"]) -> argparse.ArgumentParser:
    """The driver's flags, their defaults from the ``bench`` preset (``--bench`` picks it, see ``main``)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bench", choices=tuple(BENCHES), default=next(k for k, b in BENCHES.items() if b is bench),
                   help="the dataset's protocol (benchmarks/kd_presets.py): every default below comes from it")
    p.add_argument("--arms", nargs="+", choices=(*bench.arms, "teacher"), default=list(bench.arms),
                   help="arms to run; 'teacher': train the teacher (--train-teacher) even without a KD arm")
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
    p.add_argument("--teacher-seed", type=int, default=bench.teacher_seed,
                   help=f"seed of --train-teacher (KD runs from a seed other than {bench.teacher_seed} are named "
                        "...-T<teacher>-s<seed>)")
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
    own_protocol = args.bench.teacher is None and t_variant is None and args.teacher_seed == args.bench.teacher_seed
    # a preset without a shared teacher trains its protocol's teacher here: its KD runs are the arms' own runs
    args.teacher_tag = "" if own_protocol else teacher_tag(t_variant, args.teacher_seed, args.bench.teacher_seed)
    return teacher


def arm_jobs(args, hyp_dir: Path) -> list[tuple[str, int, Path, dict]]:
    """(arm, seed, hyp, overrides) of every run asked for, arm by arm, seed by seed."""
    jobs = []
    for arm in (a for a in args.arms if a != "teacher"):
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
        need_teacher = kd_jobs or "teacher" in args.arms
        t_future = pool.submit(prepare_teacher, args, data, hyp_dir, env, env_prefix) if need_teacher else None
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
