"""Convert the published NWPU VHR-10 folder to YOLO labels with a seeded, reproducible train/val split.

    python data/scripts/nwpu2yolo.py     # DATASETS_DIR/'NWPU VHR-10 dataset' -> <writable root>/NWPU-VHR-10
    DATASETS_DIR=../shared/datasets python data/scripts/nwpu2yolo.py   # read-only source -> ../datasets/NWPU-VHR-10
    python data/scripts/nwpu2yolo.py --src '/data/NWPU VHR-10 dataset' --out /data/NWPU-VHR-10 --seed 1
    python data/scripts/nwpu2yolo.py --include-negatives   # the 150 negative images join train as background

Input (the authors' distribution, Cheng et al., Northwestern Polytechnical University, folder
``NWPU VHR-10 dataset``): ``positive image set/NNN.jpg`` (650), ``negative image set/NNN.jpg`` (150, no
objects), ``ground truth/NNN.txt`` with one object per line, ``(x1,y1),(x2,y2),c`` in pixels, c in 1..10.
Output (a separate folder; the source is only read): ``images/{train,val}/`` (symlinks, or copies with
``--copy``), ``labels/{train,val}/<stem>.txt`` (``cls x y w h`` normalised, cls 0..9), ``split.yaml``
(the options and the image ids of each split). Negative images are named ``neg_NNN`` (their numbers
overlap the positive ones) and get an empty label file. A copy without ``negative image set/`` (the
shared one) converts with ``--include-negatives`` too: the summary says no background was added.

Where the output goes by default: ``<repo>/../datasets/NWPU-VHR-10`` (``data.config.default_datasets_dir()``),
whatever ``DATASETS_DIR`` is: ``DATASETS_DIR`` is where the published folder is read from, and a shared copy
(``../shared/datasets``, read-only in CI, writeable to root elsewhere) is never written. data/NWPU-VHR-10.yaml
looks there after ``DATASETS_DIR``, so one command is enough. The ``download: nwpu2yolo`` hook converts into
the root data.config asks for (refused when read-only).

The split is a pure function of (seed, image ids): images are ordered by sha256("<seed>:<stem>") and the
first round(n * val_fraction) go to val, so it is the same on every machine and library version (80/20 of
650 = 520/130). Lines: corners in the wrong order are swapped (noted); malformed lines, class ids outside
1..10 and boxes empty after clipping to the image are skipped and reported with file and line number,
the rest of the file is kept.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import yaml  # noqa: E402
from PIL import Image  # noqa: E402

from data import cache  # noqa: E402
from data import config  # noqa: E402
from data.images import IMG_FORMATS, exif_size  # noqa: E402

NAMES = ("airplane", "ship", "storage tank", "baseball diamond", "tennis court", "basketball court",
         "ground track field", "harbor", "bridge", "vehicle")
SOURCE_NAME = "NWPU VHR-10 dataset"  # the folder name of the authors' distribution
OUTPUT_NAME = "NWPU-VHR-10"  # what data/NWPU-VHR-10.yaml reads (its `path:`)
POSITIVE, NEGATIVE, TRUTH = "positive image set", "negative image set", "ground truth"
_NUM = r"\s*([-+]?\d+(?:\.\d*)?)\s*"
LINE = re.compile(rf"^\s*\({_NUM},{_NUM}\)\s*,\s*\({_NUM},{_NUM}\)\s*,\s*([-+]?\d+)\s*$")


@dataclass
class Summary:
    """What a conversion did: image counts per split, boxes per class (0-based), and every note."""
    images: dict = field(default_factory=lambda: {"train": 0, "val": 0, "background": 0})
    boxes: dict = field(default_factory=lambda: {"train": Counter(), "val": Counter()})  # class -> boxes
    skipped: list = field(default_factory=list)  # "file:line: reason" (line skipped)
    notes: list = field(default_factory=list)  # "file:line: note" (line kept, fixed)
    warnings: list = field(default_factory=list)  # about the folder or the options (e.g. no negative set)

    def text(self) -> str:
        im = self.images
        tr, va = self.boxes["train"], self.boxes["val"]
        rows = [f"NWPU VHR-10 -> YOLO: train {im['train']} images ({im['background']} background), val {im['val']}",
                f"{'boxes per class':>21} {'train':>6} {'val':>6} {'all':>6}"]
        rows += [f"{i:>2} {n:>18} {tr[i]:>6} {va[i]:>6} {tr[i] + va[i]:>6}" for i, n in enumerate(NAMES)]
        rows.append(f"{'all':>21} {sum(tr.values()):>6} {sum(va.values()):>6} {sum((tr + va).values()):>6}")
        rows.append(f"skipped lines: {len(self.skipped)}" + "".join(f"\n  {s}" for s in self.skipped))
        rows.append(f"fixed lines: {len(self.notes)}" + "".join(f"\n  {s}" for s in self.notes))
        rows += [f"WARNING: {w}" for w in self.warnings]
        return "\n".join(rows)


def parse_ground_truth(path: Path, width: int, height: int, summary: Summary | None = None) -> list[tuple]:
    """YOLO rows ``(cls 0..9, x, y, w, h)`` normalised to an image of ``width`` x ``height`` pixels.

    Corners are reordered (min/max) and clipped to the image; problems go to ``summary`` (skipped lines
    with their reason, fixed lines with a note), each named ``file:line``.
    """
    summary = summary if summary is not None else Summary()
    rows = []
    text = Path(path).read_text(encoding="utf-8-sig", errors="replace")
    for ln, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue  # blank lines (often trailing) carry nothing
        where = f"{path}:{ln}"
        m = LINE.match(line)
        if m is None:
            summary.skipped.append(f"{where}: malformed line {line.strip()[:60]!r} (expected '(x1,y1),(x2,y2),c')")
            continue
        x1, y1, x2, y2 = (float(v) for v in m.groups()[:4])
        c = int(m.group(5))
        if not 1 <= c <= len(NAMES):
            summary.skipped.append(f"{where}: class id {c} outside 1..{len(NAMES)}")
            continue
        if x1 > x2 or y1 > y2:
            summary.notes.append(f"{where}: corners in the wrong order, swapped to min/max")
            x1, x2, y1, y2 = min(x1, x2), max(x1, x2), min(y1, y2), max(y1, y2)
        cx1, cy1, cx2, cy2 = max(x1, 0.0), max(y1, 0.0), min(x2, float(width)), min(y2, float(height))
        if cx2 <= cx1 or cy2 <= cy1:
            summary.skipped.append(f"{where}: box {line.strip()!r} is empty inside the {width}x{height} image")
            continue
        if (cx1, cy1, cx2, cy2) != (x1, y1, x2, y2):
            summary.notes.append(f"{where}: box clipped to the {width}x{height} image")
        rows.append((c - 1, (cx1 + cx2) / 2 / width, (cy1 + cy2) / 2 / height, (cx2 - cx1) / width,
                     (cy2 - cy1) / height))
    return rows


def split_ids(ids, val_fraction: float = 0.2, seed: int = 0) -> tuple[list[str], list[str]]:
    """(train, val) image ids, each sorted: val = the first round(n * val_fraction) ids in sha256 order."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    ids = sorted(ids)
    order = sorted(ids, key=lambda s: hashlib.sha256(f"{seed}:{s}".encode()).hexdigest())
    n_val = int(round(len(ids) * val_fraction))
    val = set(order[:n_val])
    return [i for i in ids if i not in val], [i for i in ids if i in val]


def _images(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        return {}
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix[1:].lower() in IMG_FORMATS}


def _place(src: Path, dst: Path, copy: bool) -> None:
    if not copy:
        try:
            os.symlink(src.resolve(), dst)
            return
        except OSError:  # no symlinks here (e.g. Windows without the privilege): copy instead
            pass
    shutil.copy2(src, dst)


def _prepare_out(out: Path) -> None:
    """Empty the folders a previous conversion wrote; refuse to touch a folder that is not one of ours."""
    ours = (out / "split.yaml").is_file()
    for sub in ("images", "labels"):
        d = out / sub
        if d.exists() and any(d.iterdir()):
            if not ours:
                raise FileExistsError(f"{d} exists and is not an nwpu2yolo output (no split.yaml): "
                                      "choose another --out")
            shutil.rmtree(d)
    (out / "split.yaml").write_text("complete: false  # nwpu2yolo.py is writing this folder\n")  # claims it


def convert(src, out, seed: int = 0, val_fraction: float = 0.2, include_negatives: bool = False,
            copy: bool = False) -> Summary:
    """Convert the NWPU VHR-10 folder ``src`` into ``out`` (see the module docstring); returns the summary."""
    src, out = Path(src).resolve(), Path(out).resolve()
    positives = _images(src / POSITIVE)
    if not positives:
        raise FileNotFoundError(f"no images in {src / POSITIVE}: {src} is not an NWPU VHR-10 folder "
                                f"(expected '{POSITIVE}/', '{NEGATIVE}/', '{TRUTH}/')")
    if out == src or out.is_relative_to(src) or src.is_relative_to(out):
        raise ValueError(f"--out {out} overlaps the source {src}: write the conversion to a separate folder")
    out.mkdir(parents=True, exist_ok=True)
    _prepare_out(out)
    summary = Summary()
    for stem in sorted(set(p.stem for p in (src / TRUTH).glob("*.txt")) - set(positives)):
        summary.skipped.append(f"{src / TRUTH / (stem + '.txt')}: no image '{POSITIVE}/{stem}.*', file ignored")
    labelled = {}
    for stem, im in positives.items():
        gt = src / TRUTH / f"{stem}.txt"
        if not gt.is_file():
            summary.skipped.append(f"{im}: no ground truth file {gt.name}, image left out")
            continue
        with Image.open(im) as pil:
            w, h = exif_size(pil)
        labelled[stem] = (im, parse_ground_truth(gt, w, h, summary))
    train, val = split_ids(labelled, val_fraction, seed)
    negatives = _images(src / NEGATIVE) if include_negatives else {}
    if include_negatives and not negatives:
        summary.warnings.append(f"{src / NEGATIVE}: no negative images in this copy, --include-negatives adds no "
                             "background (train holds the positive images only)")
    jobs = [("train", s, *labelled[s]) for s in train] + [("val", s, *labelled[s]) for s in val]
    jobs += [("train", f"neg_{s}", p, []) for s, p in negatives.items()]
    for split in ("train", "val"):
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        (out / "labels" / split).mkdir(parents=True, exist_ok=True)
    for split, stem, im, rows in jobs:
        summary.boxes[split].update(r[0] for r in rows)
        _place(im, out / "images" / split / f"{stem}{im.suffix}", copy)
        (out / "labels" / split / f"{stem}.txt").write_text(
            "".join(f"{c} {x:.6f} {y:.6f} {w:.6f} {h:.6f}\n" for c, x, y, w, h in rows))
    summary.images.update(train=len(train) + len(negatives), val=len(val), background=len(negatives))
    record = {"complete": True, "source": str(src), "seed": seed, "val_fraction": val_fraction,
              "include_negatives": include_negatives,
              "images": dict(summary.images),
              "boxes": {s: {NAMES[k]: c[k] for k in range(len(NAMES))} for s, c in summary.boxes.items()},
              "skipped": summary.skipped, "notes": summary.notes, "warnings": summary.warnings,
              "train": train, "val": val,
              "negatives": sorted(negatives)}
    (out / "split.yaml").write_text(yaml.safe_dump(record, sort_keys=False, width=120))
    return summary


def default_source() -> Path:
    return config.datasets_dir() / SOURCE_NAME


def missing_source_message(looked: list[Path]) -> str:
    return (f"NWPU VHR-10 not found (looked in {', '.join(map(str, looked))}). It is not downloaded "
            f"automatically: get the authors' distribution (Cheng et al., Northwestern Polytechnical "
            f"University; commonly mirrored on public drives), extract it so that "
            f"'{default_source() / POSITIVE}' exists (DATASETS_DIR={config.datasets_dir()}), then run "
            f"'python data/scripts/nwpu2yolo.py' (or --src FOLDER --out FOLDER)")


def _check_writeable(out: Path) -> None:
    """Refuse an output whose nearest existing folder is read-only (e.g. a shared DATASETS_DIR)."""
    parent = next(p for p in [Path(out), *Path(out).resolve().parents] if p.exists())
    if not cache.is_writeable(parent):
        raise PermissionError(f"{parent} is not writeable: the conversion never writes into a read-only dataset "
                              f"folder; give --out a folder of your own")


def main(root: Path) -> Path:
    """The `download: nwpu2yolo` hook of data/NWPU-VHR-10.yaml: convert the published folder, found beside
    ``root`` or under DATASETS_DIR, into ``root`` with the default split (seed 0, 20% val). ``root`` is where
    data.config expects the dataset (under ``writable_datasets_dir()``); a read-only one is refused."""
    root = Path(root)
    _check_writeable(root)
    looked = list(dict.fromkeys([root.parent / SOURCE_NAME, default_source()]))
    src = next((p for p in looked if (p / POSITIVE).is_dir()), None)
    if src is None:
        raise FileNotFoundError(missing_source_message(looked))
    print(convert(src, root).text())
    return root


def cli(argv=None) -> Summary:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src", default=None, help=f"the published folder (default: DATASETS_DIR/'{SOURCE_NAME}')")
    ap.add_argument("--out", default=None, help=f"output folder (default: <repo>/../datasets/{OUTPUT_NAME}, never "
                                                "DATASETS_DIR, which may be a shared read-only copy; "
                                                "data/NWPU-VHR-10.yaml reads it there)")
    ap.add_argument("--seed", type=int, default=0, help="split seed")
    ap.add_argument("--val-fraction", type=float, default=0.2, help="share of the positive images in val")
    ap.add_argument("--include-negatives", action="store_true", help="add the negative images to train as background")
    ap.add_argument("--copy", action="store_true", help="copy images instead of symlinking them")
    args = ap.parse_args(argv)
    src = Path(args.src) if args.src else default_source()
    if not (src / POSITIVE).is_dir():
        ap.exit(2, missing_source_message([src]) + "\n")
    out = Path(args.out) if args.out else config.default_datasets_dir() / OUTPUT_NAME
    try:
        _check_writeable(out)
    except PermissionError as e:
        ap.exit(2, f"{e}\n")
    summary = convert(src, out, args.seed, args.val_fraction, args.include_negatives, args.copy)
    print(summary.text())
    data = {"path": str(Path(out).resolve()), "train": "images/train", "val": "images/val",
            "names": dict(enumerate(NAMES))}
    print(f"\n# dataset yaml for this output (data/NWPU-VHR-10.yaml reads {OUTPUT_NAME} under DATASETS_DIR "
          f"or <repo>/../datasets):")
    print(yaml.safe_dump(data, sort_keys=False))
    return summary


if __name__ == "__main__":
    cli()
