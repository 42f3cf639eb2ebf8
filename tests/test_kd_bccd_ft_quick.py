"""benchmarks/kd_bench.py --bench bccd-ft (issue 22): the fine-tune regime end to end in --quick mode. Every
student and the teacher start from the COCO yolov5n.pt; the KD arms are the new methods (CWD, PKD, OGD) and FGD,
each with --kd-balance, taught by the self-distillation teacher trained first."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from kd_presets import BALANCE_R, BENCHES  # noqa: E402
from kd_runs import rel  # noqa: E402

FT = BENCHES["bccd-ft"]
KD_ARMS = ("cwd", "pkd", "ogd")


def test_fine_tune_quick_protocol(tmp_path, bccd_dir, yolov5n_pt):
    results, runs = tmp_path / "results", tmp_path / "runs"
    env = {**os.environ, "DATASETS_DIR": str(bccd_dir.parent)}
    cmd = [sys.executable, "benchmarks/kd_bench.py", "--bench", "bccd-ft", "--quick", "--results", str(results),
           "--runs", str(runs), "--arms", "baseline", *KD_ARMS]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = results / FT.name

    teacher = json.loads((out / f"teacher-seed{FT.teacher_seed}.json").read_text())
    assert teacher["label"] == "teacher" and teacher["seed"] == FT.teacher_seed == 100
    assert "train.py" in teacher["command"] and "--cfg yolov5n.yaml" in teacher["command"]
    assert f"--weights {rel(yolov5n_pt)} " in teacher["command"] and "--seed 100 " in teacher["command"]
    teacher_pt = Path(teacher["run_dir"]) / "weights" / "best.pt"
    for label in ("baseline", *(f"{arm}@{FT.kd_variant[arm]}" for arm in KD_ARMS)):
        run = json.loads((out / f"{label}-seed0.json").read_text())
        # the fine-tune regime: the COCO checkpoint as --weights (the from-scratch presets pass --weights '')
        assert f"--weights {rel(yolov5n_pt)} " in run["command"] and "--cache ram" in run["command"], run["command"]
        assert 0.0 <= run["mAP50-95"] <= run["mAP50"] <= 1.0 and run["epochs"] == 1
        assert run["class_names"] == ["RBC", "WBC", "Platelets"] and len(run["per_class_AP50"]) == 3
        assert all(ap is None or 0.0 <= ap <= 1.0 for ap in run["per_class_AP50"])
        if label == "baseline":
            assert "train.py" in run["command"] and "--kd" not in run["command"]
            continue
        arm = label.split("@")[0]
        assert "train_kd.py" in run["command"] and f"--kd {arm} --kd-balance {BALANCE_R}" in run["command"]
        assert run["teacher"] == str(teacher_pt) and f"--teacher {teacher_pt}" in run["command"]
        assert any("KD loss magnitudes" in line for line in run["kd_diagnostic"]), run["kd_diagnostic"]
        # the KD run's own record of its set-up: the balance ratio it was asked for, the teacher it loaded
        kd_yaml = (ROOT / run["run_dir"] / "kd.yaml").read_text()
        assert arm in kd_yaml and str(BALANCE_R) in kd_yaml
    assert (results / f"{FT.name}.md").read_text().count("@bal") >= len(KD_ARMS)
