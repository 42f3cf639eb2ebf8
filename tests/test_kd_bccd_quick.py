"""benchmarks/kd_bccd.py: the whole protocol end to end in --quick mode (every arm, one seed, tiny), its report,
resumption bookkeeping and the generated hyps."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import kd_bccd  # noqa: E402


def test_quick_protocol_end_to_end(tmp_path, bccd_dir, bccd_teacher_pt):
    results, runs = tmp_path / "results", tmp_path / "runs"
    env = {**os.environ, "DATASETS_DIR": str(bccd_dir.parent)}
    cmd = [sys.executable, "benchmarks/kd_bccd.py", "--quick", "--results", str(results), "--runs", str(runs),
           "--teacher", str(bccd_teacher_pt)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    md = (results / "kd_bccd.md").read_text()
    with open(results / "kd_bccd.csv") as f:
        rows = {row["arm"]: row for row in csv.DictReader(f)}
    assert (results / "kd_bccd.png").stat().st_size > 0
    # the tuned and KD arms are named after their setting; the KD arms run on the tuned recipe's hyp
    tuned_hyp = kd_bccd.hyp_name(kd_bccd.parse_overrides(kd_bccd.TUNED))
    expected = {"tuned": f"tuned@{kd_bccd.TUNED_VARIANT}", **{a: f"{a}@{v}" for a, v in kd_bccd.KD_VARIANT.items()}}
    for arm in kd_bccd.ARMS:
        label = kd_bccd.run_label(arm, None)
        assert label == expected.get(arm, arm) and label in kd_bccd.MAIN_LABELS
        assert f"| {label} |" in md, label
        assert label in rows and rows[label]["n"] == "1"
        summary = json.loads((results / "kd_bccd" / f"{label}-seed0.json").read_text())
        assert 0.0 <= summary["mAP50-95"] <= summary["mAP50"] <= 1.0
        assert len(summary["per_epoch_mAP50-95"]) == summary["epochs"] == 1
        assert summary["seconds_per_epoch"] > 0 and summary["total_seconds"] > 0
        assert ("train_kd.py" in summary["command"]) == (arm in kd_bccd.KD_ARMS)
        assert (f"hyp.{tuned_hyp}.yaml" in summary["command"]) == (arm in ("tuned", *kd_bccd.KD_ARMS))
        if arm in kd_bccd.KD_ARMS:  # the loss-magnitude diagnostic of distill/step.py reached the run's log
            assert any("KD loss magnitudes" in line for line in summary["kd_diagnostic"]), summary["kd_diagnostic"]
    assert "teacher" in rows

    # finished runs are skipped on a second call; --report-only rebuilds the same table
    (results / "kd_bccd.md").unlink()
    again = subprocess.run(cmd + ["--arms", "baseline"], cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0 and "skipped" in again.stdout + again.stderr
    subprocess.run(cmd + ["--report-only"], cwd=ROOT, env=env, check=True, capture_output=True, timeout=300)
    assert (results / "kd_bccd.md").read_text() == md

    # a variant (a tuning candidate) gets its own run, JSON, hyp file and report row beside the arm
    variant = subprocess.run(cmd + ["--arms", "tuned", "--variant", "lr", "--tuned", "lr0=0.02"], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=300)
    assert variant.returncode == 0, variant.stdout[-3000:] + variant.stderr[-3000:]
    summary = json.loads((results / "kd_bccd" / "tuned@lr-seed0.json").read_text())
    assert (summary["arm"], summary["variant"], summary["label"]) == ("tuned", "lr", "tuned@lr")
    hyp = yaml.safe_load((results / "kd_bccd" / "hyps" / "hyp.lr00.02.yaml").read_text())
    assert hyp["lr0"] == 0.02 and "hyp.lr00.02.yaml --img" in summary["command"]
    assert "/tuned@lr --name seed0" in summary["command"]
    assert "| tuned@lr | 1 (0) |" in (results / "kd_bccd.md").read_text()

    # --train-teacher with another recipe: a yolov5s run of its own, and KD runs named after it that distil from it
    taught = subprocess.run(cmd + ["--arms", "fgd", "--train-teacher", "--teacher-recipe", "tuned"], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=300)
    assert taught.returncode == 0, taught.stdout[-3000:] + taught.stderr[-3000:]
    teacher_run = json.loads((results / "kd_bccd" / "teacher@tuned-e1-seed0.json").read_text())
    assert "train.py" in teacher_run["command"] and "--cfg yolov5s.yaml" in teacher_run["command"]
    assert f"hyp.{tuned_hyp}.yaml" in teacher_run["command"]
    label = f"fgd@{kd_bccd.KD_VARIANT['fgd']}-Ttuned-e1"
    student = json.loads((results / "kd_bccd" / f"{label}-seed0.json").read_text())
    assert student["teacher"] == str(Path(teacher_run["run_dir"]) / "weights" / "best.pt")
    assert f"--teacher {student['teacher']}" in student["command"]
    teachers = json.loads((results / "kd_bccd" / "teacher.json").read_text())
    assert sorted(t["teacher"] for t in teachers) == sorted([student["teacher"], kd_bccd.rel(bccd_teacher_pt)])
    md = (results / "kd_bccd.md").read_text()
    assert f"Teacher of the `-T...` arms `{student['teacher']}`" in md
    own_section = md[md.index("## KD from a teacher trained here"):md.index("## Tuning sweep")]
    assert f"| {label} | 1 (0) |" in own_section and "| teacher@tuned-e1 | 1 (0) |" in own_section
    from distill.teacher import file_sha256
    assert student["teacher_sha256"] == file_sha256(ROOT / student["teacher"])

    # its weights lost (a fresh checkout keeps the JSONs, not the runs): a clear stop, not a different teacher
    # under the same name; --teacher-seed trains another one, whose KD runs are named after it
    for weights in (ROOT / student["teacher"]).parent.glob("*.pt"):
        weights.unlink()
    lost = subprocess.run(cmd + ["--arms", "fgd", "--train-teacher", "--teacher-recipe", "tuned"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)
    assert lost.returncode != 0 and "--teacher-seed" in lost.stderr and "are gone" in lost.stderr, lost.stderr[-2000:]
    other = subprocess.run(cmd + ["--arms", "fgd", "--train-teacher", "--teacher-recipe", "tuned", "--teacher-seed",
                                  "1"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert other.returncode == 0, other.stdout[-3000:] + other.stderr[-3000:]
    assert "--seed 1 " in json.loads((results / "kd_bccd" / "teacher@tuned-e1-seed1.json").read_text())["command"]
    student1 = json.loads((results / "kd_bccd" / f"{label}-s1-seed0.json").read_text())
    assert "/teacher@tuned-e1/seed1/" in student1["teacher"] and student1["teacher_sha256"] != student["teacher_sha256"]


def test_kd_arms_use_the_library_defaults():
    """The benchmark's KD options spell out distill/config.py's defaults: the same weight on every loss term."""
    import train_kd

    def effective(options: str) -> dict:
        config = train_kd.build_config(train_kd.parse_opt(["--teacher", "t.pt", *options.split()]))
        out = {}
        for m in config.methods:
            if m == "cilf":
                out |= {"cilf_kl": config.method_weight(m) * config.cilf_alpha,
                        "cilf_mse": config.method_weight(m) * (1 - config.cilf_alpha)}
            elif m == "fgd":
                out |= {f"fgd_{k}": config.method_weight(m) * getattr(config, f"fgd_{k}")
                        for k in ("alpha", "beta", "gamma", "lambda")}
            else:
                out[m] = config.method_weight(m)
        return out

    methods = {"fgfi": "fgfi", "cilf": "cilf", "fgd": "fgd", "combo": "cilf fgd"}
    for arm, options in kd_bccd.KD_ARGS.items():
        assert effective(options) == pytest.approx(effective(f"--kd {methods[arm]}")), arm
    for other in (["--arms", "fgd", "--fgd-args", "--kd fgd --kd-weight 0.1"],  # other options need their own name
                  ["--arms", "fgd", "--kd-base", "control"], ["--arms", "fgfi", "--tuned", "control"],
                  ["--arms", "tuned", "--tuned", "lr0=0.03"]):
        with pytest.raises(SystemExit, match="--variant"):
            kd_bccd.main([*other, "--runs", "/nonexistent"])


def test_recipes_and_hyps(tmp_path):
    assert kd_bccd.recipe_overrides("baseline", "control") == {}
    assert kd_bccd.recipe_overrides("tuned", "control") == kd_bccd.GAINS_X2
    assert kd_bccd.recipe_overrides("tuned", "box=0.1, lr0=0.02") == {"box": 0.1, "lr0": 0.02}
    path = kd_bccd.write_hyp(tmp_path, kd_bccd.GAINS_X2)
    assert path.name == "hyp.control.yaml"
    hyp = yaml.safe_load(path.read_text())
    base = yaml.safe_load((ROOT / "data" / "hyps" / "hyp.scratch-low.yaml").read_text())
    assert {k: hyp[k] for k in ("box", "obj", "cls")} == {k: 2 * base[k] for k in ("box", "obj", "cls")}
    assert {k: v for k, v in hyp.items() if k not in ("box", "obj", "cls")} == \
        {k: v for k, v in base.items() if k not in ("box", "obj", "cls")}


def test_epoch_timing_skips_startup_and_sums_attempts(tmp_path):
    (tmp_path / "epoch_times.txt").write_text(
        "100 start\n130 1\n140 2\n150 3\n151 end\n"  # first attempt: 30 s start-up + epoch, then 10 s epochs
        "200 start\n240 4\n252 5\n")  # resumed attempt, still running (no 'end')
    timing = kd_bccd.epoch_timing(tmp_path)
    assert timing["seconds_per_epoch"] == (10 + 10 + 12) / 3
    assert timing["train_seconds"] == 51 + 52


def test_best_no_teacher_ignores_precision_variants():
    fp32 = [{"arm": "baseline", "extra_args": ""}]
    assert kd_bccd.is_no_teacher_recipe(fp32) and kd_bccd.is_no_teacher_recipe([{"arm": "tuned"}])
    assert not kd_bccd.is_no_teacher_recipe([{"arm": "baseline", "extra_args": "--amp"}])
    assert not kd_bccd.is_no_teacher_recipe([{"arm": "fgd", "extra_args": ""}])
