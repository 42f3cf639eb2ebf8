"""GPU check (issue 24): the whole product once on a CUDA GPU, every figure printed with the GPU's name.

    DATASETS_DIR=../shared/datasets python benchmarks/gpu_check.py                       # on a CUDA machine, ~2 min
    DATASETS_DIR=../shared/datasets python benchmarks/gpu_check.py --device cpu --img 64 --epochs 1 --workers 0
                                                                                          # the same steps, a CPU dry run

Steps, each its own process (as a user runs them), timed from outside:
1. train.py, the COCO yolov5n fine-tuned on BCCD, ``--epochs`` at ``--img`` px: the default precision (CUDA: fp16
   autocast + GradScaler), then ``--amp-dtype bf16``;
2. train_kd.py, the same student taught by the shared yolov5s teacher with ``--kd cwd``;
3. val.py on the fp16 run's best.pt; detect.py over the BCCD images with it;
4. benchmarks/kd_step.py (student step, teacher forward, the FGD, CWD and OGD steps) at the same size.
Seconds per epoch are the intervals between results.csv rows (kd_runs.epoch_timing; with 2 epochs: the second
one, start-up excluded); GPU memory is the most ``nvidia-smi`` reported while the step ran, less what was in use
before it. Writes ``<out>/gpu_check.json`` and ``<out>/gpu_check.md``.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from kd_runs import epoch_timing, rel, results_rows, run_training  # noqa: E402

SHARED = (ROOT / ".." / "shared").resolve()
TEACHER = SHARED / "weights" / "bccd-yolov5s-320.pt"
STUDENT = SHARED / "weights" / "yolov5n.pt"
IMAGES = SHARED / "datasets" / "BCCD" / "JPEGImages"


class GpuMemory:
    """Polls nvidia-smi's memory.used (MiB) in a thread; ``peak`` less the reading at start."""

    def __init__(self):
        self.cmd = shutil.which("nvidia-smi")
        self.start = self.peak = self._read()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _read(self) -> float:
        if not self.cmd:
            return 0.0
        out = subprocess.run([self.cmd, "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True)
        return float(out.stdout.split()[0]) if out.returncode == 0 and out.stdout.strip() else 0.0

    def _poll(self):
        while not self._stop.wait(0.5):
            self.peak = max(self.peak, self._read())

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    @property
    def used_mib(self) -> float:
        return self.peak - self.start


def environment(device: str) -> dict:
    import torch

    env = {"torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
           "python": sys.version.split()[0]}
    if device != "cpu" and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(int(device or 0))
        env.update(gpu=props.name, capability=f"{props.major}.{props.minor}", gpu_memory_gib=props.total_memory / 2**30,
                   multiprocessors=props.multi_processor_count, bf16_native=torch.cuda.is_bf16_supported())
    else:
        env["gpu"] = "none (CPU dry run)"
    return env


def train(args, name: str, script: str, extra: list[str]) -> dict:
    run_dir = args.out / name
    shutil.rmtree(run_dir, ignore_errors=True)
    cmd = [sys.executable, script, "--data", "data/BCCD.yaml", "--weights", rel(STUDENT), "--cfg", "yolov5n.yaml",
           "--img", str(args.img), "--batch-size", str(args.batch), "--epochs", str(args.epochs),
           "--workers", str(args.workers), "--device", args.device, "--cache", "ram", "--seed", "0",
           "--project", str(args.out), "--name", name, "--exist-ok", *extra]
    with GpuMemory() as mem:
        t0 = time.time()
        rc = run_training(cmd, run_dir, None)
        wall = time.time() - t0
    rows = results_rows(run_dir)
    timing = epoch_timing(run_dir)
    last = rows[-1] if rows else {}
    return {"step": name, "command": "python " + " ".join(cmd[1:]), "rc": rc, "wall_s": wall,
            "s_per_epoch": timing["seconds_per_epoch"], "epochs_done": len(rows), "gpu_mib": mem.used_mib,
            "mAP50": float(last.get("metrics/mAP_0.5", "nan")), "mAP50-95": float(last.get("metrics/mAP_0.5:0.95", "nan")),
            "precision_line": _grep(run_dir / "train.log", r"(?:AMP|autocast|FP32|precision)[^\n]*")}


def _grep(path: Path, pattern: str) -> str:
    text = path.read_text(errors="replace").replace("\r", "\n") if path.exists() else ""
    found = re.findall(pattern, text)
    return found[0].strip()[:160] if found else ""


def timed(name: str, cmd: list[str], log: Path) -> dict:
    with GpuMemory() as mem, open(log, "w") as f:
        t0 = time.time()
        rc = subprocess.run(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT).returncode
        wall = time.time() - t0
    return {"step": name, "command": "python " + " ".join(cmd[1:]), "rc": rc, "wall_s": wall, "gpu_mib": mem.used_mib,
            "log_tail": log.read_text(errors="replace").replace("\r", "\n").strip().splitlines()[-4:]}


def evaluate_and_detect(args, weights: Path) -> list[dict]:
    val = timed("val", [sys.executable, "val.py", "--data", "data/BCCD.yaml", "--weights", str(weights), "--img",
                        str(args.img), "--batch-size", "32", "--device", args.device, "--workers", str(args.workers),
                        "--project", str(args.out), "--name", "val", "--exist-ok"], args.out / "val.log")
    m = re.search(r"all\s+(\d+)\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)", (args.out / "val.log").read_text())
    if m:
        val.update({"mAP50": float(m.group(5)), "mAP50-95": float(m.group(6))})
    n_images = len(list(IMAGES.glob("*.jpg")))
    det = timed("detect", [sys.executable, "detect.py", "--weights", str(weights), "--source", str(IMAGES), "--img",
                           str(args.img), "--device", args.device, "--project", str(args.out), "--name", "detect",
                           "--exist-ok", "--nosave"], args.out / "detect.log")
    det["images"] = n_images
    det["images_per_s"] = n_images / det["wall_s"]
    speed = re.search(r"Speed: ([\d.]+)ms pre-process, ([\d.]+)ms inference, ([\d.]+)ms NMS", (args.out / "detect.log").read_text())
    if speed:
        det["ms_pre_infer_nms"] = [float(x) for x in speed.groups()]
    return [val, det]


def kd_steps(args) -> dict:
    cmd = [sys.executable, "benchmarks/kd_step.py", "--teacher", str(TEACHER), "--imgsz", str(args.img),
           "--batch", str(args.batch), "--iters", str(args.step_iters), "--warmup", "3", "--device", args.device or "0",
           "--cases", "teacher", "student", "fgd", "cwd", "ogd"]
    out = timed("kd_step", cmd, args.out / "kd_step.log")
    out["lines"] = [ln for ln in (args.out / "kd_step.log").read_text().splitlines() if "s/step" in ln or " x (" in ln]
    return out


def markdown(env: dict, steps: list[dict]) -> str:
    lines = [f"# GPU check on {env['gpu']}", "", "Generated by `benchmarks/gpu_check.py`. " + ", ".join(
        f"{k} {v if not isinstance(v, float) else f'{v:.1f}'}" for k, v in env.items() if k != "gpu") + ".", "",
        "| step | rc | wall s | s/epoch | GPU MiB | mAP50 | mAP50-95 |", "|---|---|---|---|---|---|---|"]
    for s in steps:
        def num(key, fmt=".3f"):
            v = s.get(key)
            return "–" if v is None or v != v else format(v, fmt)
        lines.append(f"| {s['step']} | {s['rc']} | {s['wall_s']:.1f} | {num('s_per_epoch', '.2f')} | "
                     f"{num('gpu_mib', '.0f')} | {num('mAP50')} | {num('mAP50-95')} |")
    lines += ["", "Commands:", ""] + [f"- {s['step']}: `{s['command']}`" for s in steps]
    for s in steps:
        if s.get("lines"):
            lines += ["", "kd_step.py:", "", "```", *s["lines"], "```"]
        if s["step"] == "detect" and "images_per_s" in s:
            lines += ["", f"detect.py: {s['images']} images in {s['wall_s']:.1f} s (whole process, "
                          f"{s['images_per_s']:.1f} images/s); per image pre/infer/NMS ms: {s.get('ms_pre_infer_nms')}"]
    return "\n".join(lines) + "\n"


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="0", help="CUDA index, or cpu for a dry run")
    p.add_argument("--img", type=int, default=640)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--step-iters", type=int, default=20)
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "gpu_check")
    args = p.parse_args(argv)
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    env = environment(args.device)
    print(f"GPU check on {env['gpu']}: {env}", flush=True)
    cpu = args.device == "cpu"
    runs = [("plain", "train.py", []), ("plain-bf16", "train.py", ["--amp-dtype", "bf16"]),
            ("kd-cwd", "train_kd.py", ["--teacher", str(TEACHER), "--kd", "cwd"])]
    if cpu:  # no fp16 on the CPU: the default is bf16 there
        runs = [r for r in runs if r[0] != "plain-bf16"]
    steps = []
    for name, script, extra in runs:
        steps.append(train(args, name, script, extra))
        print(f"{env['gpu']} | {name}: {steps[-1]['wall_s']:.1f} s, {steps[-1]['s_per_epoch']:.2f} s/epoch, "
              f"mAP50-95 {steps[-1]['mAP50-95']:.3f}, rc {steps[-1]['rc']}", flush=True)
    best = args.out / "plain" / "weights" / "best.pt"
    steps += evaluate_and_detect(args, best)
    steps.append(kd_steps(args))
    (args.out / "gpu_check.json").write_text(json.dumps({"environment": env, "steps": steps}, indent=1) + "\n")
    md = markdown(env, steps)
    (args.out / "gpu_check.md").write_text(md)
    print(md, flush=True)
    return steps


if __name__ == "__main__":
    main()
