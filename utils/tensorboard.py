"""TensorBoard event files for a training run (``tensorboard --logdir runs/train``).

The loop hands over the same row it appends to results.csv, so the scalar tags are the csv column names
(``train/box_loss``, ``train/distill_fgd_p4``, ``metrics/mAP_0.5``, ``x/lr0``, ...): every named loss term
appears without any edit here. Images (the first training batches, kd_masks.jpg) are read back from the files
the run already writes, once each. ``open_writer`` returns None when the ``tensorboard`` package is not
installed, and then nothing of it is imported. The writer only writes local files: no network, ever.
"""
from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import numpy as np

LOGGER = logging.getLogger(__name__)
IMAGE_PATTERNS = ("train_batch*.jpg", "kd_masks.jpg")


def available() -> bool:
    """Whether the ``tensorboard`` package can be imported (checked without importing it)."""
    try:
        return importlib.util.find_spec("tensorboard") is not None
    except (ImportError, ValueError):
        return False


class RunWriter:
    """One ``SummaryWriter`` on ``log_dir``; scalars by name, images by file (each file logged once)."""

    def __init__(self, log_dir: str | Path):
        from torch.utils.tensorboard import SummaryWriter  # imports tensorboard: only when it is installed

        self.log_dir = Path(log_dir)
        self.writer = SummaryWriter(str(self.log_dir))
        self.logged: set[str] = set()

    def scalars(self, row: dict[str, float], step: int) -> None:
        """Every entry of ``row`` except ``epoch`` as a scalar at ``step``."""
        for tag, value in row.items():
            if tag != "epoch":
                self.writer.add_scalar(tag, float(value), step)
        self.writer.flush()

    def new_images(self, step: int, patterns=IMAGE_PATTERNS) -> list[str]:
        """Log the run's image files matching ``patterns`` that were not logged before; returns their tags."""
        import cv2

        tags = []
        for pattern in patterns:
            for path in sorted(self.log_dir.glob(pattern)):
                if path.stem in self.logged:
                    continue
                image = cv2.imread(str(path))
                if image is None:  # still being written, or not an image: try again next time
                    continue
                self.writer.add_image(path.stem, np.ascontiguousarray(image[..., ::-1]), step, dataformats="HWC")
                self.logged.add(path.stem)
                tags.append(path.stem)
        self.writer.flush()
        return tags

    def close(self) -> None:
        self.writer.close()


def open_writer(log_dir: str | Path) -> RunWriter | None:
    """A writer on ``log_dir``, or None (logged once) when TensorBoard is not installed."""
    if not available():
        LOGGER.info("TensorBoard: not installed, no event files (pip install tensorboard)")
        return None
    LOGGER.info(f"TensorBoard: start with 'tensorboard --logdir {Path(log_dir).parent}', view at http://localhost:6006/")
    return RunWriter(log_dir)
