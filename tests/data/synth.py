"""Synthetic images and labels for the data tests (built in tmp_path, tiny)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

# BGR colour of class k; background 60 and pad 114 are far from all of them
COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (255, 0, 255), (0, 255, 255),
           (255, 255, 255), (0, 0, 0)]
BACKGROUND = 60


def write_image(path: Path, w: int = 64, h: int = 48, rects=(), value: int = BACKGROUND) -> Path:
    """Write a BGR image of ``value`` grey with filled rectangles ``(cls, x1, y1, x2, y2)`` (pixels,
    inclusive-exclusive) in the class colour."""
    im = np.full((h, w, 3), value, np.uint8)
    for c, x1, y1, x2, y2 in rects:
        im[y1:y2, x1:x2] = COLOURS[c]
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), im)
    return path


def rect_labels(rects, w: int, h: int) -> str:
    """YOLO rows for pixel rectangles."""
    rows = []
    for c, x1, y1, x2, y2 in rects:
        rows.append(f"{c} {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} {(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f}")
    return "\n".join(rows) + "\n"


def make_yolo_dataset(root: Path, n: int = 8, w: int = 96, h: int = 72, ext: str = "png", seed: int = 0):
    """``root/images/train/*`` + ``root/labels/train/*.txt``, 2 non-touching coloured rectangles each."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        c1, c2 = rng.choice(len(COLOURS), 2, replace=False)
        bw, bh = int(rng.integers(12, w // 3)), int(rng.integers(12, h // 3))
        x1, y1 = int(rng.integers(2, w // 2 - bw)), int(rng.integers(2, h - bh - 2))
        x2, y2 = int(rng.integers(w // 2 + 2, w - bw - 2)), int(rng.integers(2, h - bh - 2))
        rects = [(int(c1), x1, y1, x1 + bw, y1 + bh), (int(c2), x2, y2, x2 + bw, y2 + bh)]
        write_image(root / "images" / "train" / f"im{i}.{ext}", w, h, rects)
        lb = root / "labels" / "train" / f"im{i}.txt"
        lb.parent.mkdir(parents=True, exist_ok=True)
        lb.write_text(rect_labels(rects, w, h))
    return root / "images" / "train"
