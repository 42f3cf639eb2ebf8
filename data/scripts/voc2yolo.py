"""Convert Pascal VOC XML splits to YOLO txt labels (the source folder is only read).

    python data/scripts/voc2yolo.py --voc ../datasets/BCCD --splits train val --names RBC WBC Platelets \
        --out runs/bccd-yolo
    python data/scripts/voc2yolo.py --voc ../datasets/BCCD --data data/BCCD.yaml --out runs/bccd-yolo

Writes ``OUT/labels/<id>.txt`` (``cls x y w h`` normalised) and ``OUT/<voc name>_<split>.txt`` image lists,
and prints a dataset yaml that trains on them. Rules: data/voc.py (difficult objects skipped, VOC 1-based
offset, clipped, zero-size boxes dropped with a warning).
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import yaml  # noqa: E402

from data import voc  # noqa: E402
from data.config import parse_names  # noqa: E402


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--voc", required=True, help="VOC root holding Annotations/, JPEGImages/, ImageSets/Main/")
    ap.add_argument("--splits", nargs="+", default=["train", "val"], help="ImageSets/Main/<split>.txt names")
    ap.add_argument("--names", nargs="+", help="class names in id order")
    ap.add_argument("--data", help="take the class names from this dataset yaml instead")
    ap.add_argument("--out", required=True, help="output folder (must not be inside the VOC root)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.data:
        names = parse_names(yaml.safe_load(Path(args.data).read_text())["names"])
    elif args.names:
        names = parse_names(args.names)
    else:
        ap.error("give --names or --data")
    root, out = Path(args.voc).resolve(), Path(args.out).resolve()
    if out.is_relative_to(root):
        ap.error(f"--out {out} is inside the VOC root {root}: write conversions elsewhere")
    lists = {}
    for split in args.splits:
        split_file = root / "ImageSets" / "Main" / f"{split}.txt"
        if not voc.is_voc_split(split_file) or not split_file.is_file():
            ap.error(f"{split_file} is not a VOC split file")
        lists[split] = str(voc.convert_split(split_file, list(names.values()), out))
    d = {"path": str(out), **lists, "labels": str(out / "labels"), "names": names}
    print(yaml.safe_dump(d, sort_keys=False))
    return d


if __name__ == "__main__":
    main()
