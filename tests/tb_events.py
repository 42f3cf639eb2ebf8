"""Read a run's TensorBoard event files back (tests only)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest


def require_tensorboard():
    """The tensorboard package (requirements.txt): skipped without it, except under CI=true."""
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("tensorboard is in requirements.txt and must be installed under CI=true")
        pytest.skip("tensorboard is not installed (pip install -r requirements.txt)")
    return EventAccumulator


def read_events(run_dir: Path) -> tuple[dict[str, list[tuple[int, float]]], dict[str, list[int]]]:
    """({scalar tag: [(step, value)]}, {image tag: [step]}) over every event file in ``run_dir``."""
    accumulator = require_tensorboard()
    files = sorted(Path(run_dir).glob("events.out.tfevents.*"))
    assert files, f"no event file in {run_dir}"
    scalars, images = {}, {}
    for f in files:
        acc = accumulator(str(f), size_guidance={"scalars": 0, "images": 0})
        acc.Reload()
        tags = acc.Tags()
        for tag in tags["scalars"]:
            scalars.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
        for tag in tags["images"]:
            images.setdefault(tag, []).extend(e.step for e in acc.Images(tag))
    return scalars, images
