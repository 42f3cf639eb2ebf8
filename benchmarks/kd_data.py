"""The --quick datasets of benchmarks/kd_bench.py: a few images of each preset's data, in a temporary folder, so
the whole pipeline runs in CI in seconds. The shared sources are only read."""
from __future__ import annotations

from pathlib import Path

import yaml

from kd_runs import ROOT


def quick_dataset(tmp: Path, data: str, quick: dict) -> Path:
    """A small BCCD subset: yaml + txt lists of the first images of train and val, labels from the VOC cache."""
    from data.config import check_dataset

    d = check_dataset(str(ROOT / data) if (ROOT / data).exists() else data)
    tmp.mkdir(parents=True, exist_ok=True)
    out = {"path": str(tmp), "names": d["names"], "labels": d["labels"]}
    for split, n in (("train", quick["train_images"]), ("val", quick["val_images"])):
        lines = [s for s in Path(d[split]).read_text().splitlines() if s.strip()][:n]
        (tmp / f"{split}.txt").write_text("\n".join(lines) + "\n")
        out[split] = f"{split}.txt"
    path = tmp / "BCCD-quick.yaml"
    path.write_text(yaml.safe_dump(out, sort_keys=False))
    return path


def nwpu_quick_dataset(tmp: Path, quick: dict) -> Path:
    """The first images of the published NWPU folder (under DATASETS_DIR), converted by nwpu2yolo into ``tmp``
    with the usual seeded split: a yaml over train_images + val_images of them. The source is only read."""
    from data.config import datasets_dir
    from data.scripts import nwpu2yolo

    src = datasets_dir() / nwpu2yolo.SOURCE_NAME
    if not (src / nwpu2yolo.POSITIVE).is_dir():
        raise SystemExit(nwpu2yolo.missing_source_message([src]))
    n = quick["train_images"] + quick["val_images"]
    subset = tmp / "source"
    for sub in (nwpu2yolo.POSITIVE, nwpu2yolo.TRUTH):
        (subset / sub).mkdir(parents=True, exist_ok=True)
    for im in sorted((src / nwpu2yolo.POSITIVE).glob("*.jpg"))[:n]:  # symlinks: nothing copied
        for f, link in ((im, subset / nwpu2yolo.POSITIVE / im.name),
                        (src / nwpu2yolo.TRUTH / f"{im.stem}.txt", subset / nwpu2yolo.TRUTH / f"{im.stem}.txt")):
            if not link.exists():
                link.symlink_to(f.resolve())
    out = tmp / "NWPU-quick"
    nwpu2yolo.convert(subset, out, val_fraction=quick["val_images"] / n)
    cfg = {"path": str(out), "train": "images/train", "val": "images/val", "names": dict(enumerate(nwpu2yolo.NAMES))}
    path = tmp / "NWPU-quick.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path
