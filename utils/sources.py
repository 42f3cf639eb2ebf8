"""Inference sources for detect.py: image and video files, folders, globs and txt lists of paths.

Each item is ``(path, letterboxed CHW RGB uint8 array, original BGR image, video capture or None, log prefix)``.
Unreadable images and videos that cannot be opened are reported and skipped, never fatal.
"""
from __future__ import annotations

import glob
import logging
import os
from pathlib import Path

import cv2
import numpy as np

from utils.letterbox import letterbox

LOGGER = logging.getLogger(__name__)
IMG_FORMATS = {"bmp", "dng", "jpeg", "jpg", "mpo", "png", "tif", "tiff", "webp", "pfm"}
VID_FORMATS = {"asf", "avi", "gif", "m4v", "mkv", "mov", "mp4", "mpeg", "mpg", "ts", "wmv"}


def _suffix(p: str) -> str:
    return p.rsplit(".", 1)[-1].lower() if "." in Path(p).name else ""


def expand_source(source) -> list[str]:
    """Sorted file list from a file, a folder, a glob pattern, a .txt list of paths, or a list of those."""
    if isinstance(source, (list, tuple)):
        return [f for s in source for f in expand_source(s)]
    source = str(source)
    path = Path(source)
    if any(ch in source for ch in "*?["):
        files = sorted(glob.glob(source, recursive=True))
    elif path.is_dir():
        files = sorted(str(p) for p in path.iterdir())
    elif path.is_file() and path.suffix.lower() == ".txt":
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        files = [str((path.parent / x.strip()) if not os.path.isabs(x.strip()) else x.strip()) for x in lines if x.strip()]
    elif path.is_file():
        files = [source]
    else:
        raise FileNotFoundError(f"source {source} does not exist")
    return [f for f in files if _suffix(f) in IMG_FORMATS | VID_FORMATS]


class LoadImages:
    """Iterate images and video frames, letterboxed to ``img_size`` (minimum rectangle when ``auto``)."""

    def __init__(self, source, img_size=640, stride: int = 32, auto: bool = True, vid_stride: int = 1):
        self.files = expand_source(source)
        if not self.files:
            raise FileNotFoundError(
                f"no images or videos found in {source}; supported: {sorted(IMG_FORMATS)} and {sorted(VID_FORMATS)}"
            )
        self.img_size, self.stride, self.auto, self.vid_stride = img_size, stride, auto, max(int(vid_stride), 1)
        self.nf = len(self.files)
        self.skipped: list[str] = []

    def __len__(self):
        return self.nf

    def _prepare(self, im0: np.ndarray) -> np.ndarray:
        im = letterbox(im0, self.img_size, stride=self.stride, auto=self.auto)[0]
        return np.ascontiguousarray(im.transpose((2, 0, 1))[::-1])  # HWC BGR -> CHW RGB

    def __iter__(self):
        for n, f in enumerate(self.files, 1):
            if _suffix(f) in VID_FORMATS:
                yield from self._video(f, n)
                continue
            im0 = cv2.imread(f)
            if im0 is None:
                LOGGER.warning(f"WARNING: skipping {f}: cannot read or decode the image")
                self.skipped.append(f)
                continue
            yield f, self._prepare(im0), im0, None, f"image {n}/{self.nf} {f}: "

    def _video(self, f: str, n: int):
        cap = cv2.VideoCapture(f)
        if not cap.isOpened():
            LOGGER.warning(f"WARNING: skipping {f}: cannot open the video")
            self.skipped.append(f)
            return
        frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) / self.vid_stride)
        frame = 0
        try:
            while True:
                for _ in range(self.vid_stride):
                    ok = cap.grab()
                if not ok:
                    break
                ok, im0 = cap.retrieve()
                if not ok:
                    break
                frame += 1
                yield f, self._prepare(im0), im0, cap, f"video {n}/{self.nf} ({frame}/{frames}) {f}: "
        finally:
            cap.release()
        if frame == 0:  # opened, but not one frame decodes
            LOGGER.warning(f"WARNING: skipping {f}: no frame of the video could be decoded")
            self.skipped.append(f)
