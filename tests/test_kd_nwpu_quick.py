"""benchmarks/kd_bench.py --bench nwpu --quick: a handful of the shared NWPU VHR-10 images converted into a
temporary folder, a yolov5n teacher trained here, two arms run two at a time, the report; then the same call skips
the finished runs and --report-only rebuilds the same page. The shared folder (read-only in CI) is only read."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import SHARED, _require

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import kd_bench  # noqa: E402
from kd_presets import NWPU  # noqa: E402

SOURCE = SHARED / "datasets" / "NWPU VHR-10 dataset"


@pytest.fixture(scope="module")
def nwpu_shared() -> Path:
    return _require(SOURCE)


def _listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.iterdir())


def test_nwpu_quick_end_to_end(nwpu_shared, tmp_path):
    results, runs = tmp_path / "results", tmp_path / "runs"
    before = _listing(nwpu_shared.parent)
    env = {**os.environ, "DATASETS_DIR": str(nwpu_shared.parent), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "benchmarks/kd_bench.py", "--bench", "nwpu", "--quick", "--results", str(results),
           "--runs", str(runs), "--arms", "baseline", "fgd", "fgdseed2", "--jobs", "2", "--threads", "1"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert _listing(nwpu_shared.parent) == before  # nothing written beside the shared copy

    # the subset: converted by nwpu2yolo into the runs folder, 6 train / 2 val images
    data = yaml.safe_load((runs / "data" / "NWPU-quick.yaml").read_text())
    assert data["names"][9] == "vehicle" and Path(data["path"]).is_relative_to(tmp_path)
    assert len(os.listdir(Path(data["path"]) / "images" / "train")) == 6
    assert len(os.listdir(Path(data["path"]) / "images" / "val")) == 2

    # the teacher is trained here first (yolov5n in quick mode); the KD arms are named as in the main table
    teacher = json.loads((results / "kd_nwpu" / "teacher-seed0.json").read_text())
    assert "train.py" in teacher["command"] and "--cfg yolov5n.yaml" in teacher["command"]
    md = (results / "kd_nwpu.md").read_text()
    assert md.startswith(NWPU.title) and (results / "kd_nwpu.png").stat().st_size > 0
    with open(results / "kd_nwpu.csv") as f:
        rows = {row["arm"]: row for row in csv.DictReader(f)}
    for arm in ("baseline", "fgd", "fgdseed2"):
        label = kd_bench.run_label(arm, None, bench=NWPU)
        assert label in NWPU.main_labels and f"| {label} |" in md and rows[label]["n"] == "1"
        s = json.loads((results / "kd_nwpu" / f"{label}-seed0.json").read_text())
        assert 0.0 <= s["mAP50-95"] <= s["mAP50"] <= 1.0 and s["epochs"] == 1 and s["threads"] == 1
        assert "--amp" in s["command"].split() and "--img 64" in s["command"]  # autocast: recorded
        if arm != "baseline":
            assert s["teacher"] == teacher["run_dir"] + "/weights/best.pt"
    # seed 2's FGD runs on the doubled detection loss at the official weights; ours on the tuned recipe
    seed2 = json.loads((results / "kd_nwpu" / "fgdseed2@official-x2-seed0.json").read_text())
    assert "hyp.control.yaml" in seed2["command"] and "--kd-weight 1 " in seed2["command"] + " "
    ours = json.loads((results / "kd_nwpu" / f"fgd@{NWPU.kd_variant['fgd']}-seed0.json").read_text())
    assert "hyp.box0.1-obj2-cls1-lr00.02.yaml" in ours["command"]
    assert not list(runs.rglob("driver.lock"))  # released

    # finished runs are skipped; --report-only rebuilds the same page
    (results / "kd_nwpu.md").unlink()
    again = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and again.stdout.count("skipped") + again.stderr.count("skipped") >= 4
    subprocess.run(cmd + ["--report-only"], cwd=ROOT, env=env, check=True, capture_output=True, timeout=120)
    assert (results / "kd_nwpu.md").read_text() == md


def test_presets_and_lock(tmp_path):
    args = kd_bench.parse_args(["--bench", "nwpu"])
    assert (args.epochs, args.imgsz, args.batch, args.train_teacher, args.teacher_cfg) == (150, 512, 32, True,
                                                                                           "yolov5s.yaml")
    assert args.arms == ["baseline", "control", "tuned", "fgfi", "cilf", "fgd", "fgdseed2"]
    bccd = kd_bench.parse_args([])
    assert (bccd.bench.name, bccd.epochs, bccd.imgsz, bccd.train_teacher, bccd.device) == ("kd_bccd", 60, 320,
                                                                                            False, "cpu")
    # a run held by a live driver is left alone; a stale lock (dead pid) is taken over
    run = tmp_path / "run"
    run.mkdir()
    (run / "driver.lock").write_text(str(os.getppid()))
    with kd_bench.RunLock(run) as lock:
        assert not lock.held and lock.owner == os.getppid()
    (run / "driver.lock").write_text("999999999")
    with kd_bench.RunLock(run) as lock:
        assert lock.held and (run / "driver.lock").read_text() == str(os.getpid())
    assert not (run / "driver.lock").exists()
