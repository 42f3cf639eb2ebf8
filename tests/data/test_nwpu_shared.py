"""NWPU VHR-10 on the shared copy as it is (no negative set, read-only): the seeded 520/130 split, and the one
documented conversion command making data/NWPU-VHR-10.yaml work with DATASETS_DIR=../shared/datasets."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from data import config
from data.scripts import nwpu2yolo
from tests.conftest import SHARED, _require

ROOT = Path(__file__).resolve().parents[2]
# the val ids of the default split (seed 0, 20%) of the 650 positive images, as sha256 of "005,011,...": the
# same on every machine, since the split depends only on the seed and the file stems
VAL_SEED0_SHA256 = "216e659ada7e78cdb239507dbe8475566782dd1e8a228182f1279ed4e489da71"
VAL_SEED0_FIRST = ["005", "011", "016", "023", "024", "031", "047", "048", "049", "050"]


@pytest.fixture(scope="module")
def nwpu_shared() -> Path:
    return _require(SHARED / "datasets" / nwpu2yolo.SOURCE_NAME)


def _read_only(monkeypatch, folder: Path) -> None:
    """Treat ``folder`` as read-only even where this checkout of ../shared is writeable (CI mounts it read-only)."""
    real = config.cache.is_writeable
    monkeypatch.setattr(config.cache, "is_writeable",
                        lambda p: not Path(p).resolve().is_relative_to(folder.resolve()) and real(p))


def _tree_digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        h.update(f"{p.relative_to(folder)}|{p.stat().st_size}|{p.stat().st_mtime_ns}\n".encode())
    return h.hexdigest()


def test_shared_split_is_pinned_and_negatives_are_absent(nwpu_shared, tmp_path):
    before = _tree_digest(nwpu_shared)
    summary = nwpu2yolo.convert(nwpu_shared, tmp_path / "out", include_negatives=True)
    assert summary.images == {"train": 520, "val": 130, "background": 0}
    assert sum(summary.boxes["train"].values()) + sum(summary.boxes["val"].values()) == 3896
    assert summary.boxes["train"][9] + summary.boxes["val"][9] == 598  # vehicle: the files say 598
    assert any("no negative images" in w for w in summary.warnings) and "WARNING" in summary.text()
    record = yaml.safe_load((tmp_path / "out" / "split.yaml").read_text())
    assert record["val"][:10] == VAL_SEED0_FIRST
    assert hashlib.sha256(",".join(record["val"]).encode()).hexdigest() == VAL_SEED0_SHA256
    # independent of the order the filesystem lists the files in
    stems = [p.stem for p in (nwpu_shared / nwpu2yolo.POSITIVE).iterdir()]
    assert nwpu2yolo.split_ids(reversed(sorted(stems)))[1] == record["val"]
    assert _tree_digest(nwpu_shared) == before


def test_one_command_with_read_only_shared_datasets_dir(nwpu_shared, tmp_path, monkeypatch):
    """DATASETS_DIR=../shared/datasets (read-only): the documented command converts into the writable default
    root (<repo>/../datasets, here a temporary folder) and the shipped yaml then resolves to it."""
    writable = tmp_path / "datasets"
    monkeypatch.setenv("DATASETS_DIR", str(nwpu_shared.parent))
    monkeypatch.setattr(config, "default_datasets_dir", lambda: writable)
    _read_only(monkeypatch, nwpu_shared.parent)
    assert config.writable_datasets_dir() == writable
    with pytest.raises(FileNotFoundError, match="nwpu2yolo"):
        config.check_dataset("NWPU-VHR-10.yaml")
    nwpu2yolo.cli([])  # python data/scripts/nwpu2yolo.py
    d = config.check_dataset("NWPU-VHR-10.yaml")
    assert d["path"] == str(writable / nwpu2yolo.OUTPUT_NAME) and d["nc"] == 10
    assert len(os.listdir(d["train"])) == 520 and len(os.listdir(d["val"])) == 130
    assert not (nwpu_shared.parent / nwpu2yolo.OUTPUT_NAME).exists()


def test_one_command_never_writes_into_a_writeable_datasets_dir(nwpu_shared, tmp_path, monkeypatch):
    """Even when DATASETS_DIR can be written (a shared copy as root), the conversion goes beside the repo."""
    source_root, writable = tmp_path / "shared_datasets", tmp_path / "datasets"
    source_root.mkdir()
    (source_root / nwpu2yolo.SOURCE_NAME).symlink_to(nwpu_shared, target_is_directory=True)
    monkeypatch.setenv("DATASETS_DIR", str(source_root))
    monkeypatch.setattr(config, "default_datasets_dir", lambda: writable)
    nwpu2yolo.cli([])
    assert sorted(p.name for p in source_root.iterdir()) == [nwpu2yolo.SOURCE_NAME]
    assert config.check_dataset("NWPU-VHR-10.yaml")["path"] == str(writable / nwpu2yolo.OUTPUT_NAME)


def test_autodownload_never_writes_into_read_only_root(nwpu_shared, tmp_path, monkeypatch):
    writable = tmp_path / "datasets"
    monkeypatch.setenv("DATASETS_DIR", str(nwpu_shared.parent))
    monkeypatch.setattr(config, "default_datasets_dir", lambda: writable)
    _read_only(monkeypatch, nwpu_shared.parent)
    d = config.check_dataset("NWPU-VHR-10.yaml", autodownload=True)  # download: nwpu2yolo
    assert d["path"] == str(writable / nwpu2yolo.OUTPUT_NAME)
    with pytest.raises(PermissionError, match="not writeable"):  # asked to write into the shared copy itself
        nwpu2yolo.main(nwpu_shared.parent / nwpu2yolo.OUTPUT_NAME)
    with pytest.raises(SystemExit):
        nwpu2yolo.cli(["--out", str(nwpu_shared.parent / "NWPU-VHR-10")])


def test_script_help_runs_standalone():
    out = subprocess.run([sys.executable, "data/scripts/nwpu2yolo.py", "--help"], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0 and "read-only" in out.stdout
