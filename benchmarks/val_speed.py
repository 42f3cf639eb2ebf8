"""val.py throughput on coco8 (yolov5n, 640) and BCCD val (the BCCD yolov5s teacher, 320).

Usage (from the repo root, with ../shared beside it):
    python benchmarks/val_speed.py [--device cpu] [--workers 2] [--repeats 2]

Reports, per case, the wall-clock seconds of a whole ``val.run`` (loader creation, inference, NMS, metrics),
images/s, val.py's own per-image split (pre-process / inference / NMS, ms) and the mAPs, best of ``--repeats``.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DATASETS_DIR", str(SHARED / "datasets"))

import val  # noqa: E402

CASES = (  # name, data, weights, imgsz, batch size
    ("coco8 val", "coco8.yaml", SHARED / "weights" / "yolov5n.pt", 640, 4),
    ("BCCD val", "BCCD.yaml", SHARED / "weights" / "bccd-yolov5s-320.pt", 320, 32),
)


def bench(data, weights, imgsz, batch_size, device, workers, repeats, project):
    best = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        results, _, times = val.run(data, weights=str(weights), imgsz=imgsz, batch_size=batch_size, device=device,
                                    workers=workers, plots=False, project=project, name="bench")
        wall = time.perf_counter() - t0
        if best is None or wall < best[0]:
            best = (wall, results, times)
    return best


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2, help="runs per case; the fastest is reported")
    opt = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    from data.config import check_dataset

    print(f"{'case':<10} {'images':>6} {'wall s':>7} {'img/s':>7} {'pre ms':>7} {'inf ms':>7} {'NMS ms':>7} "
          f"{'mAP50':>6} {'mAP':>6}")
    with tempfile.TemporaryDirectory() as project:
        for name, data, weights, imgsz, bs in CASES:
            if not weights.exists():
                print(f"{name:<10} skipped: {weights} not found")
                continue
            data = check_dataset(data)
            wall, results, times = bench(data, weights, imgsz, bs, opt.device, opt.workers, opt.repeats, project)
            n = _count_images(data["val"])
            print(f"{name:<10} {n:>6} {wall:>7.2f} {n / wall:>7.1f} {times[0]:>7.1f} {times[1]:>7.1f} "
                  f"{times[2]:>7.1f} {results[2]:>6.3f} {results[3]:>6.3f}")


def _count_images(val_path) -> int:
    from data.images import list_image_files

    return len(list_image_files(val_path))


if __name__ == "__main__":
    main()
