"""Training-loader throughput on BCCD: images/s with augmentation (mosaic, HSV, flips, scale/translate).

    DATASETS_DIR=../shared/datasets python benchmarks/loader_throughput.py [--sizes 320 640] [--workers 0 2]

Measures whole epochs through ``create_dataloader`` (hyp.scratch-low augmentation, batch 16), after one
warm-up epoch (which also builds the VOC conversion and label cache), and prints one line per setting.

Measured on the 2-core dev machine (shared with other jobs, load average ~5, so treat as lower bounds),
BCCD train (205 images), batch 16, 2 timed epochs each:
    imgsz 320: workers 0 -> 38.2 images/s, workers 2 -> 78.7 images/s
    imgsz 640: workers 0 -> 24.5 images/s, workers 2 -> 47.3 images/s
Single-process profile at 320: ~12 ms per mosaic sample, of which ~6.6 ms is JPEG decoding (4 images);
``--cache ram`` in train.py removes the decoding.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data.config import check_dataset  # noqa: E402
from data.loader import create_dataloader  # noqa: E402

SCRATCH_LOW = dict(hsv_h=0.015, hsv_s=0.7, hsv_v=0.4, degrees=0.0, translate=0.1, scale=0.5, shear=0.0,
                   perspective=0.0, flipud=0.0, fliplr=0.5, mosaic=1.0, mixup=0.0, copy_paste=0.0)


def measure(data: dict, imgsz: int, workers: int, batch: int, epochs: int) -> float:
    loader, dataset = create_dataloader(data["train"], imgsz, batch, 32, hyp=SCRATCH_LOW, augment=True,
                                        shuffle=True, workers=workers, nc=data["nc"], labels_dir=data.get("labels"))
    for _ in loader:  # warm-up epoch (worker start-up, page cache)
        pass
    n, t0 = 0, time.perf_counter()
    for _ in range(epochs):
        for imgs, *_ in loader:
            n += imgs.shape[0]
    return n / (time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="BCCD.yaml")
    ap.add_argument("--sizes", type=int, nargs="+", default=[320, 640])
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=2)
    args = ap.parse_args()
    data = check_dataset(args.data)
    for imgsz in args.sizes:
        for workers in args.workers:
            ips = measure(data, imgsz, workers, args.batch, args.epochs)
            print(f"loader {args.data} train imgsz={imgsz} workers={workers} batch={args.batch}: {ips:.1f} images/s")


if __name__ == "__main__":
    main()
