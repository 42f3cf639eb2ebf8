"""Shared fixtures. Tests that need ../shared skip with a reason when it is absent, except under CI=true."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = (ROOT / ".." / "shared").resolve()


def _require(path: Path) -> Path:
    if not path.exists():
        msg = f"{path} not found: tests that use the shared data/weights need ../shared beside the repo"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg + " (CI=true: must not skip)")
        pytest.skip(msg)
    return path


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return _require(SHARED)


@pytest.fixture(scope="session")
def coco8_dir() -> Path:
    return _require(SHARED / "datasets" / "coco8")


@pytest.fixture(scope="session")
def bccd_dir() -> Path:
    return _require(SHARED / "datasets" / "BCCD")


@pytest.fixture(scope="session")
def yolov5n_pt() -> Path:
    return _require(SHARED / "weights" / "yolov5n.pt")


@pytest.fixture(scope="session")
def bccd_teacher_pt() -> Path:
    return _require(SHARED / "weights" / "bccd-yolov5s-320.pt")


@pytest.fixture(scope="session")
def reference_json() -> Path:
    return _require(SHARED / "reference" / "yolov5n-coco8.json")


@pytest.fixture(scope="session")
def bccd_subset_yaml(bccd_dir, tmp_path_factory) -> Path:
    """A dataset yaml over the first 32 BCCD train and 16 val images (labels converted from the shared VOC XML
    into a temp cache), so end-to-end tests on real data stay fast."""
    import yaml

    from data.config import check_dataset

    tmp = tmp_path_factory.mktemp("bccd_subset")
    old = {k: os.environ.get(k) for k in ("DATASETS_DIR", "YOLO_CACHE_DIR")}
    os.environ.update(DATASETS_DIR=str(bccd_dir.parent), YOLO_CACHE_DIR=str(tmp / "cache"))
    try:
        full = check_dataset(ROOT / "data" / "BCCD.yaml")
    finally:
        for k, v in old.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    for split, n in (("train", 32), ("val", 16)):
        lines = Path(full[split]).read_text().splitlines()[:n]
        (tmp / f"{split}.txt").write_text("\n".join(lines) + "\n")
    cfg = {"path": str(tmp), "train": "train.txt", "val": "val.txt", "labels": full["labels"], "names": full["names"]}
    path = tmp / "bccd_subset.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def untrained_checkpoint(tmp_path_factory):
    """Factory: ``make(cfg, nc, seed=1)`` saves a fresh, seeded ``Model(cfg, nc)`` as one of our checkpoints (a
    stand-in teacher or weights file) in a new temporary folder and returns its path."""
    import torch

    from models import weights
    from models.yolo import Model
    from utils import checkpoint

    def make(cfg: str, nc: int, seed: int = 1) -> Path:
        torch.manual_seed(seed)
        path = tmp_path_factory.mktemp("teacher") / f"{Path(cfg).stem}-nc{nc}.pt"
        checkpoint.save_checkpoint({"model": weights.model_record(Model(cfg, nc=nc)), "epoch": -1}, path)
        return path

    return make
