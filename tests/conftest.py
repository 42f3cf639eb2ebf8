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
