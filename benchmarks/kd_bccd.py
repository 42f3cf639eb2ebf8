"""The BCCD benchmark (issue 10): ``benchmarks/kd_bench.py --bench bccd`` under its old name, so the commands of
the README, docs and reports keep working. Every flag is kd_bench.py's; the names below are the BCCD preset's.

    DATASETS_DIR=../shared/datasets python benchmarks/kd_bccd.py                  # the whole protocol (resumable)
    python benchmarks/kd_bccd.py --arms baseline control fgd --seeds 0           # a part of it
    python benchmarks/kd_bccd.py --report-only                                    # rebuild the report from the JSONs
    python benchmarks/kd_bccd.py --quick --results /tmp/r --runs /tmp/runs         # the pipeline in ~1 min (CI)
"""
from __future__ import annotations

import functools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import kd_bench  # noqa: E402
from kd_bench import (GAINS_X2, NO_TEACHER, epoch_timing, hyp_name, is_no_teacher_recipe,  # noqa: E402,F401
                      parse_overrides, recipe_overrides, rel, write_hyp)
from kd_presets import BCCD  # noqa: E402
from kd_report import fmt, mean_std  # noqa: E402,F401 - used by bf16_accuracy.py
import kd_report  # noqa: E402

DEFAULT_TEACHER = BCCD.teacher
KD_ARMS, ARMS, KD_ARGS, MAIN_LABELS = BCCD.kd_arms, BCCD.arms, BCCD.kd_args, BCCD.main_labels
TUNED, TUNED_VARIANT, KD_VARIANT, QUICK = BCCD.tuned, BCCD.tuned_variant, BCCD.kd_variant, BCCD.quick
run_label = functools.partial(kd_bench.run_label, bench=BCCD)
build_report = functools.partial(kd_bench.build_report, bench=BCCD)
load_summaries = functools.partial(kd_report.load_summaries, bench=BCCD)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    return kd_bench.main(["--bench", "bccd", *argv])


if __name__ == "__main__":
    main()
