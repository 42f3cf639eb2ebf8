#!/usr/bin/env bash
# One prepared GPU session for a lent GPU machine that sees only the repo (issues 22 and 24): the GPU check and the
# fine-tune-regime BCCD benchmark, results packed for the trip back.
#
#   bash benchmarks/gpu_session.sh pack            # here: copy what the runs read from ../shared into .devshared/
#                                                  #   (26 MB; keep it out of git: echo /.devshared/ >> .git/info/exclude)
#   OUT=/tmp/out bash benchmarks/gpu_session.sh 1 400   # there (carry .devshared): gpu_check.py, then the teacher,
#                                                  #   the no-teacher arms (5 seeds) and the seed-0 tuning candidates
#   OUT=/tmp/out bash benchmarks/gpu_session.sh 2 420   # there (carry .devshared and benchmarks/runs/kd_bccd_ft/teacher,
#                                                  #   the JSONs of part 1 in benchmarks/results): the KD arms, 5 seeds
#   bash benchmarks/gpu_session.sh pack nwpu; OUT=/tmp/out bash benchmarks/gpu_session.sh nwpu 560
#                                                  # NWPU (issue 21) in a session of its own: 53 MiB packed
#
# Part 1 takes about SECONDS (its second argument): every run still going then is stopped (SIGINT, then SIGKILL)
# so the packing always happens; a stopped run has no JSON and is not reported. $OUT/results.tgz holds the JSONs
# and the small files of every run (results.csv, logs, opt.yaml, kd.yaml, kd_balance.yaml); $OUT/teacher_best.pt
# the teacher. Unpack it in the repo root (tar xzf) and rebuild the report with
# python benchmarks/kd_bench.py --bench bccd-ft --report-only.
set -u
cd "$(dirname "$0")/.."
if [ "${1:-}" = pack ]; then  # pack nwpu: NWPU alone, for a session of its own (part nwpu)
  if [ "${2:-}" = nwpu ]; then python benchmarks/pack_for_device.py --no-bccd --nwpu
  else python benchmarks/pack_for_device.py; fi
  exit $?
fi
[ -e ../shared ] || cp -r .devshared ../shared  # a copy, not a link: the recorded commands then read ../shared/...
export DATASETS_DIR=../shared/datasets PYTHONUNBUFFERED=1 MPLBACKEND=Agg
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
LOG=$OUT/part$1.log
START=$(date +%s)
left() { echo $(( $1 - ($(date +%s) - START) )); }
{
nvidia-smi --query-gpu=name,memory.used,memory.total,driver_version --format=csv
python3 -c "import torch, torchvision, cv2, yaml, scipy, matplotlib, tqdm; print(torch.__version__, torchvision.__version__, torch.cuda.is_available() and torch.cuda.get_device_name(0))" || exit 3
python3 -c "import train, train_kd, val, detect" || exit 4
B="python3 benchmarks/kd_bench.py --bench bccd-ft ${EXTRA:-}"
if [ "$1" = nwpu ]; then  # issue 21: seed 2's protocol, teacher first, then the arms; resumable across calls
  T=$(left "$2"); echo "NWPU with $T s left"
  timeout -s INT -k 20 $((T - 30)) python3 benchmarks/kd_bench.py --bench nwpu --jobs "${JOBS:-8}" ${EXTRA:-} \
    > "$OUT/d1.log" 2>&1
elif [ "$1" = 1 ]; then
  timeout -s INT -k 20 "${GPUC:-140}" python3 benchmarks/gpu_check.py --out runs/gpu_check || echo "gpu_check rc $?"
  T=$(left "$2"); echo "benchmark part 1 with $T s left"
  timeout -s INT -k 20 $((T - 35)) $B --arms teacher baseline tuned --seeds 0 1 2 3 4 --jobs 7 > "$OUT/d1.log" 2>&1 &
  sleep 2
  timeout -s INT -k 20 $((T - 37)) $B --arms tuned --tuned lr0=0.005 --variant lr0.005 --seeds 0 > "$OUT/d2.log" 2>&1 &
  timeout -s INT -k 20 $((T - 37)) $B --arms baseline --epochs 100 --variant e100 --seeds 0 > "$OUT/d3.log" 2>&1 &
  wait
else
  T=$(left "$2"); echo "benchmark part 2 with $T s left"
  timeout -s INT -k 20 $((T - 30)) $B --arms ${ARMS:-cwd pkd ogd fgd} --seeds 0 1 2 3 4 --jobs "${JOBS:-10}" \
    > "$OUT/d1.log" 2>&1
fi
echo "done after $(( $(date +%s) - START )) s"
} > "$LOG" 2>&1
tar czf "$OUT/results.tgz" benchmarks/results/kd_bccd_ft benchmarks/results/kd_nwpu runs/gpu_check/gpu_check.json \
  runs/gpu_check/gpu_check.md $(find benchmarks/runs/kd_bccd_ft benchmarks/runs/kd_nwpu runs/gpu_check -name results.csv -o -name epoch_times.txt -o -name train.log \
    -o -name opt.yaml -o -name kd.yaml -o -name kd_balance.yaml -o -name '*.log' 2>/dev/null) 2>/dev/null
for teacher in benchmarks/runs/kd_bccd_ft/teacher/seed100/weights/best.pt benchmarks/runs/kd_nwpu/teacher/seed0/weights/best.pt; do
  [ -f $teacher ] && cp $teacher "$OUT/$(echo $teacher | cut -d/ -f3)_teacher_best.pt"
done
tail -5 "$OUT"/d*.log 2>/dev/null; tail -40 "$LOG"
