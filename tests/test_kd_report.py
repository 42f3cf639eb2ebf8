"""benchmarks/kd_report.py: the paired-seed statistics of a KD claim, against a hand computation."""
from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from kd_report import paired, paired_table  # noqa: E402


def runs(values: dict[int, float], arm: str = "x") -> list[dict]:
    return [{"seed": seed, "mAP50-95": v, "arm": arm} for seed, v in values.items()]


def test_paired_difference_and_t_interval():
    # differences on the shared seeds 0, 1, 2: 0.01, 0.02, 0.03 (seed 3 has no reference and is left out)
    p = paired(runs({0: 0.51, 1: 0.52, 2: 0.53, 3: 0.90}), runs({0: 0.50, 1: 0.50, 2: 0.50}))
    assert p["n"] == 3 and [s for s, _ in p["diffs"]] == [0, 1, 2]
    assert p["mean"] == pytest.approx(0.02) and p["std"] == pytest.approx(0.01)
    half = 4.302652729911275 * 0.01 / math.sqrt(3)  # t(0.975, 2), from a t table
    assert (p["low"], p["high"]) == (pytest.approx(0.02 - half), pytest.approx(0.02 + half))


def test_paired_table_verdicts():
    by_arm = {"ref": runs({0: 0.5, 1: 0.5, 2: 0.5}), "up": runs({0: 0.52, 1: 0.53, 2: 0.52}),
              "mixed": runs({0: 0.55, 1: 0.45, 2: 0.5}), "one": runs({0: 0.6}),
              "teacher": runs({0: 0.7, 1: 0.7}, arm="teacher")}
    lines = paired_table(by_arm, list(by_arm), "ref", "the reference")
    rows = {line.split(" | ")[0].strip("| "): line for line in lines if line.startswith("| ") and "---" not in line}
    assert rows["up"].endswith("| gain |") and "s0 +2.0, s1 +3.0, s2 +2.0" in rows["up"]
    assert rows["mixed"].endswith("| no significant difference |")
    assert rows["one"].endswith("| too few seeds |") and "| – |" in rows["one"]
    assert "teacher" not in rows and "ref" not in rows
    assert paired_table(by_arm, list(by_arm), None, "none") == []


def test_per_class_table_means_and_missing_classes():
    from kd_report import per_class_table

    by_arm = {"a": [{"per_class_AP50": [0.5, None, 0.2], "class_names": ["x", "y", "z"]},
                    {"per_class_AP50": [0.7, None, 0.4], "class_names": ["x", "y", "z"]}],
              "old": [{"mAP50": 0.1}]}  # a run from before per-class AP50 was recorded: left out
    lines = per_class_table(by_arm, ["a", "old"])
    assert "| arm | seeds | x | y | z |" in lines
    assert "| a | 2 | 0.600 | – | 0.300 |" in lines and not any(line.startswith("| old") for line in lines)
