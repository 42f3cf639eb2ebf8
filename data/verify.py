"""Verification of one image/label pair: a bad pair is reported with the exact problem, never raised."""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from data.images import IMG_FORMATS, exif_size

MIN_SIDE = 10  # images must be > 9 px on each side


@dataclass
class Record:
    """The verification result of one image/label pair.

    ``status`` is one of 'found' (labels present), 'empty' (label file without rows), 'missing' (no label
    file) or 'corrupt' (skip this pair; ``msg`` names the file and the problem). ``labels`` is (n, 5)
    float32 ``cls x y w h`` normalised; ``shape`` is the displayed (w, h); ``segments`` a list of (k, 2)
    normalised polygons (only when every row is a polygon).
    """

    im_file: str
    status: str
    labels: np.ndarray = field(default_factory=lambda: np.zeros((0, 5), np.float32))
    shape: tuple[int, int] = (0, 0)
    segments: list = field(default_factory=list)
    msg: str = ""


def verify_pair(im_file: str, lb_file: str, nc: int | None = None) -> Record:
    """Check that ``im_file`` decodes and is big enough, and that ``lb_file`` holds valid YOLO rows."""
    try:
        shape, warn = check_image(im_file)
    except Exception as e:
        return Record(im_file, "corrupt", msg=f"{im_file}: ignoring corrupt image: {e}")
    if not os.path.isfile(lb_file):
        return Record(im_file, "missing", shape=shape, msg=warn)
    try:
        labels, segments, notes = parse_label_file(lb_file, nc)
    except ValueError as e:
        return Record(im_file, "corrupt", shape=shape, msg=f"{lb_file}: ignoring corrupt label: {e}")
    msg = "; ".join(m for m in [warn, *notes] if m)
    status = "found" if len(labels) else "empty"
    return Record(im_file, status, labels, shape, segments, msg)


def check_image(im_file: str) -> tuple[tuple[int, int], str]:
    """Return the displayed (w, h) and a warning ('' if none); raise ValueError/OSError on a bad image."""
    if os.path.getsize(im_file) == 0:
        raise ValueError("zero-byte file")
    with Image.open(im_file) as im:
        im.verify()  # cheap structural check, no full decode
    with Image.open(im_file) as im:
        shape = exif_size(im)
        fmt = (im.format or "").lower()
    if fmt not in IMG_FORMATS:
        raise ValueError(f"unsupported image format {fmt!r}")
    if shape[0] < MIN_SIDE or shape[1] < MIN_SIDE:
        raise ValueError(f"image size {shape[0]}x{shape[1]} is <{MIN_SIDE} pixels")
    warn = ""
    if fmt in ("jpeg", "mpo") and not _ends_with_eoi(im_file):
        _full_decode(im_file)  # raises on a truncated file; the user's file is never re-saved
        warn = f"{im_file}: JPEG has data after its end marker (decodes fully, kept)"
    return shape, warn


def _ends_with_eoi(path: str) -> bool:
    with open(path, "rb") as f:
        f.seek(-2, 2)
        return f.read() == b"\xff\xd9"


def _full_decode(path: str) -> None:
    try:
        with Image.open(path) as im:
            im.load()
    except OSError as e:
        raise ValueError(f"truncated JPEG (no FFD9 end marker): {e}") from e


def parse_label_file(lb_file: str, nc: int | None = None):
    """Parse a YOLO label file -> (labels (n,5) float32, segments, notes).

    Rows are ``cls x y w h`` or polygons ``cls x1 y1 x2 y2 ...`` (more than 6 values, even number of
    coordinates; the box is the polygon's min/max). Raises ValueError naming the first bad row. Exact
    duplicate rows are dropped with a note. CRLF line ends and blank lines are accepted.
    """
    try:
        text = open(lb_file, "rb").read().decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"not UTF-8 text ({e.reason} at byte {e.start})") from e
    rows, polys = [], []
    for ln, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        row = _parse_row(line, ln)
        if len(row) > 6:
            pts = row[1:].reshape(-1, 2)
            polys.append(pts)
            row = np.array([row[0], *_poly_box(pts)], np.float32)
        rows.append(row)
    if not rows:
        return np.zeros((0, 5), np.float32), [], []
    labels = np.stack(rows).astype(np.float32)
    _check_values(labels, nc)
    segments = polys if len(polys) == len(rows) else []
    labels, segments, note = _drop_duplicates(labels, segments, lb_file)
    return labels, segments, [note] if note else []


def _parse_row(line: str, ln: int) -> np.ndarray:
    parts = line.split()
    try:
        row = np.array([float(v) for v in parts], np.float64)
    except ValueError as e:
        raise ValueError(f"line {ln}: non-numeric value ({e})") from e
    n = len(row)
    if n != 5 and (n < 7 or (n - 1) % 2):
        raise ValueError(f"line {ln}: {n} columns, labels require 5 columns (or a polygon: cls + x y pairs)")
    if not np.isfinite(row).all():
        raise ValueError(f"line {ln}: non-finite value (NaN or inf)")
    return row


def _poly_box(pts: np.ndarray):
    x1, y1 = pts.min(0)
    x2, y2 = pts.max(0)
    return (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1


def _check_values(labels: np.ndarray, nc: int | None) -> None:
    cls = labels[:, 0]
    bad = (cls < 0) | (cls != np.round(cls))
    if bad.any():
        raise ValueError(f"class ids must be non-negative integers, got {sorted(set(cls[bad].tolist()))}")
    if nc is not None and (cls >= nc).any():
        raise ValueError(f"class id {int(cls.max())} exceeds dataset class count nc={nc} (ids 0-{nc - 1})")
    xywh = labels[:, 1:]
    if (xywh < 0).any():
        raise ValueError(f"negative coordinate values {xywh[(xywh < 0).any(1)][0].tolist()}")
    if (xywh > 1).any():
        raise ValueError(f"non-normalised or out-of-bounds coordinates {xywh[(xywh > 1).any(1)][0].tolist()}")


def _drop_duplicates(labels: np.ndarray, segments: list, lb_file: str):
    _, keep = np.unique(labels, axis=0, return_index=True)
    if len(keep) == len(labels):
        return labels, segments, ""
    keep = np.sort(keep)
    note = f"{lb_file}: {len(labels) - len(keep)} duplicate labels removed"
    return labels[keep], [segments[i] for i in keep] if segments else [], note
