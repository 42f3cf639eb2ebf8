"""benchmarks/bf16_accuracy.py: its arms map onto the KD benchmark's runs, and the one-std verdict is right."""
from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import bf16_accuracy  # noqa: E402


def write_runs(results: Path, label: str, arm: str, values: list[tuple[float, float]]) -> None:
    (results / "kd_bccd").mkdir(parents=True, exist_ok=True)
    for seed, (m50, m) in enumerate(values):
        summary = {"arm": arm, "label": label, "seed": seed, "mAP50": m50, "mAP50-95": m, "seconds_per_epoch": 10.0}
        (results / "kd_bccd" / f"{label}-seed{seed}.json").write_text(json.dumps(summary))


def test_report_pairs_and_one_std_rule(tmp_path):
    args = bf16_accuracy.get_args_parser().parse_args(["--results", str(tmp_path), "--report-only"])
    args.results = tmp_path
    # FP32: mAP50 0.80 ± 0.01, mAP50-95 0.46 ± 0.02; bf16: mAP50 0.805 (within 0.01), mAP50-95 0.50 (outside 0.02)
    write_runs(tmp_path, "baseline", "baseline", [(0.79, 0.44), (0.80, 0.46), (0.81, 0.48)])
    write_runs(tmp_path, "baseline@bf16", "baseline", [(0.795, 0.48), (0.805, 0.50), (0.815, 0.52)])
    write_runs(tmp_path, "fgd@x0.1", "fgd", [(0.7, 0.4), (0.7, 0.4)])  # 2 seeds: no verdict yet
    text = bf16_accuracy.report(args)
    assert "| plain-fp32 | baseline | 3 (0,1,2) | 0.8000 ± 0.0100 | 0.4600 ± 0.0200 | 10.0 |" in text
    assert "| plain-bf16 | baseline@bf16 | 3 (0,1,2) |" in text
    assert "plain-bf16 vs plain-fp32: mAP50 +0.0050 (within one std: 0.0100); mAP50-95 +0.0400 (outside" in text
    assert "kd-teacher-bf16 vs kd-teacher-fp32: pending (needs >= 3 seeds in each; have 2 and 0)" in text
    assert "| kd-teacher-bf16 | fgd@x0.1-tbf16 | 0 | pending |" in text
    assert (tmp_path / "bf16_accuracy.md").read_text() == text


def test_arms_are_kd_bccd_runs_with_one_difference():
    args = bf16_accuracy.get_args_parser().parse_args(["--seeds", "0", "1", "2"])
    plain, plain_bf16 = (bf16_accuracy.kd_bccd_argv(a, args) for a in ("plain-fp32", "plain-bf16"))
    assert "--extra-args=--amp --amp-dtype bf16" in plain_bf16 and "--extra-args=" in plain
    assert [a for a in plain_bf16 if a not in plain] == ["--extra-args=--amp --amp-dtype bf16", "--variant", "bf16"]
    kd, kd_bf16 = (bf16_accuracy.kd_bccd_argv(a, args) for a in ("kd-teacher-fp32", "kd-teacher-bf16"))
    assert [a for a in kd_bf16 if a not in kd] == ["--extra-args=--teacher-dtype bf16", "x0.1-tbf16"]
