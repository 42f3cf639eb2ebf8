"""Pack what the GPU session's runs read from ../shared into .devshared/ (a lent machine sees only the repo, at
most 64 MiB of it): BCCD and the two weights as they are, and, with --nwpu, NWPU VHR-10 converted (nwpu2yolo's
seeded 520/130 split) with every image resized to --nwpu-side px on its long side (JPEG quality 95).

    python benchmarks/pack_for_device.py                     # BCCD + weights (26 MiB): the bccd-ft session
    python benchmarks/pack_for_device.py --no-bccd --nwpu    # NWPU at 512 px alone (53 MiB): an NWPU session

The resize is the one change: the loader would resize a larger image to 512 on its long side anyway (INTER_AREA
here, its own interpolation there, and a second JPEG encoding), so runs on the packed copy are NWPU's protocol up
to that rounding. Keep .devshared out of git (``echo /.devshared/ >> .git/info/exclude``); ../shared is only read.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parents[1]
SHARED = (ROOT / ".." / "shared").resolve()


def pack_bccd(out: Path) -> None:
    (out / "datasets").mkdir(parents=True, exist_ok=True)
    (out / "weights").mkdir(parents=True, exist_ok=True)
    shutil.copytree(SHARED / "datasets" / "BCCD", out / "datasets" / "BCCD", dirs_exist_ok=True)
    for name in ("yolov5n.pt", "bccd-yolov5s-320.pt"):
        shutil.copy2(SHARED / "weights" / name, out / "weights" / name)


def pack_nwpu(out: Path, side: int) -> None:
    target = out / "datasets" / "NWPU-VHR-10"
    with tempfile.TemporaryDirectory() as tmp:
        converted = Path(tmp) / "NWPU-VHR-10"
        subprocess.run([sys.executable, "data/scripts/nwpu2yolo.py", "--src",
                        str(SHARED / "datasets" / "NWPU VHR-10 dataset"), "--out", str(converted), "--copy"],
                       cwd=ROOT, check=True)
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(converted / "labels", target / "labels")
        shutil.copy2(converted / "split.yaml", target / "split.yaml")
        for image in sorted((converted / "images").rglob("*.jpg")):
            im = cv2.imread(str(image))
            if im is None:
                raise SystemExit(f"{image}: not a readable image")
            scale = side / max(im.shape[:2])
            if scale < 1:
                im = cv2.resize(im, (round(im.shape[1] * scale), round(im.shape[0] * scale)),
                                interpolation=cv2.INTER_AREA)
            dest = target / image.relative_to(converted)
            dest.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(dest), im, [cv2.IMWRITE_JPEG_QUALITY, 95])


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=ROOT / ".devshared")
    p.add_argument("--bccd", action=argparse.BooleanOptionalAction, default=True, help="BCCD and the weights")
    p.add_argument("--nwpu", action="store_true", help="NWPU VHR-10, converted and resized (too big beside BCCD)")
    p.add_argument("--nwpu-side", type=int, default=512, help="long side of the packed NWPU images")
    args = p.parse_args(argv)
    if args.bccd:
        pack_bccd(args.out)
    if args.nwpu:
        pack_nwpu(args.out, args.nwpu_side)
    size = sum(f.stat().st_size for f in args.out.rglob("*") if f.is_file())
    print(f"{args.out}: {size / 2**20:.1f} MiB (the repo and the carried paths together may be 64 MiB)")


if __name__ == "__main__":
    main()
