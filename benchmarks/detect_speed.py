"""detect.py speed per image (pre-process / inference / NMS), after one warm-up pass.

    python benchmarks/detect_speed.py --weights ../shared/weights/yolov5n.pt \
        --source ../shared/datasets/coco8/images --imgsz 640 --repeat 3
"""
import argparse
import logging
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import detect  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--weights", default="../shared/weights/yolov5n.pt")
    p.add_argument("--source", default="../shared/datasets/coco8/images")
    p.add_argument("--imgsz", type=int, default=640)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    source = str(Path(args.source) / "**" / "*.jpg") if Path(args.source).is_dir() else args.source
    with tempfile.TemporaryDirectory() as tmp:
        kw = dict(weights=args.weights, source=source, imgsz=(args.imgsz, args.imgsz), device="cpu", nosave=True,
                  project=tmp, exist_ok=True)
        detect.run(**kw)  # warm-up
        runs = [detect.run(**kw).speed for _ in range(args.repeat)]
    best = min(runs, key=sum)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, imgsz {args.imgsz}, "
          f"{len(detect.LoadImages(source, args.imgsz).files)} images, best of {args.repeat}:")
    print("pre-process %.1f ms, inference %.1f ms, NMS %.1f ms, total %.1f ms per image" % (*best, sum(best)))


if __name__ == "__main__":
    main()
