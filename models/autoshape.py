"""A model that takes images as users have them and returns plain detections (what torch.hub.load returns).

``AutoShape(model)(ims, size=640)``: ``ims`` is one image or a list of them, each a file name (str or Path), an
HWC RGB uint8 numpy array (``cv2.imread(f)[..., ::-1]``), or a PIL image. Images are letterboxed to one batch
shape (the largest image scaled to ``size``, rounded up to the stride), predicted, put through NMS and scaled
back to each image's pixels. A (B, 3, H, W) float tensor in 0-1 goes to the model unchanged (raw output), as
upstream's AutoShape. No network: URLs are refused.
"""
from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from utils import boxes, nms
from utils.letterbox import letterbox


def read_rgb(im) -> tuple[np.ndarray, str]:
    """One input as (HWC RGB uint8 contiguous array, file name or a generated one)."""
    if isinstance(im, (str, Path)):
        name = str(im)
        if name.startswith(("http:", "https:")):
            raise ValueError(f"{name}: URLs are not fetched (no network); download the image and pass the file")
        bgr = cv2.imread(name)  # the decoder detect.py uses, so both see the same pixels
        if bgr is None:
            raise FileNotFoundError(f"cannot read image {name}")
        return np.ascontiguousarray(bgr[..., ::-1]), Path(name).name
    if isinstance(im, np.ndarray):
        arr = im
    elif hasattr(im, "convert"):  # PIL.Image.Image, without importing PIL for the other inputs
        arr = np.asarray(im.convert("RGB"))
        return np.ascontiguousarray(arr), Path(getattr(im, "filename", "") or "image.jpg").name
    else:
        raise TypeError(f"unsupported image type {type(im).__name__}: give a file name, numpy array or PIL image")
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, 2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ValueError(f"numpy images must be HWC with 3 (RGB) or 4 channels, got shape {arr.shape}")
    return np.ascontiguousarray(arr[..., :3]).astype(np.uint8, copy=False), "image.jpg"


class Detections:
    """Plain per-image results: ``xyxy[i]`` is a (n, 6) tensor ``[x1, y1, x2, y2, conf, cls]`` in image i's
    pixels; ``xywh``, ``xyxyn`` and ``xywhn`` are the same rows as centre-size and/or normalised by the image
    size; ``names`` maps class index -> name; ``files``, ``shapes`` ((h, w) per image), ``ims`` (RGB arrays)."""

    def __init__(self, ims: list[np.ndarray], pred: list[torch.Tensor], files: list[str], names: dict):
        self.ims, self.xyxy, self.files, self.names = ims, pred, files, names
        self.shapes = [im.shape[:2] for im in ims]
        gains = [torch.tensor([w, h, w, h, 1.0, 1.0], device=p.device) for (h, w), p in zip(self.shapes, pred)]
        self.xywh = [torch.cat((boxes.xyxy2xywh(p[:, :4]), p[:, 4:]), 1) for p in pred]
        self.xyxyn = [p / g for p, g in zip(self.xyxy, gains)]
        self.xywhn = [p / g for p, g in zip(self.xywh, gains)]

    def __len__(self) -> int:
        return len(self.xyxy)

    def tolist(self) -> list[list[dict]]:
        """Per image, one dict per detection: xmin, ymin, xmax, ymax, confidence, class, name."""
        keys = ("xmin", "ymin", "xmax", "ymax", "confidence")
        return [[{**dict(zip(keys, row[:5])), "class": int(row[5]), "name": self.names[int(row[5])]}
                 for row in p.tolist()] for p in self.xyxy]

    def __str__(self) -> str:
        lines = []
        for i, (p, (h, w)) in enumerate(zip(self.xyxy, self.shapes)):
            counts = {}
            for c in p[:, 5].long().tolist():
                counts[c] = counts.get(c, 0) + 1
            found = ", ".join(f"{n} {self.names[c]}{'s' * (n > 1)}" for c, n in sorted(counts.items()))
            lines.append(f"image {i + 1}/{len(self)}: {h}x{w} {found or '(no detections)'}")
        return "\n".join(lines)


class AutoShape(nn.Module):
    """Pre-processing, inference, NMS and scaling around an eval-mode detection model (or Ensemble).

    The NMS settings are attributes, as upstream's: ``conf`` 0.25, ``iou`` 0.45, ``classes`` None (all),
    ``agnostic`` False, ``multi_label`` False, ``max_det`` 1000.
    """

    conf, iou, classes, agnostic, multi_label, max_det = 0.25, 0.45, None, False, False, 1000

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model.eval()
        self.names = model.names
        self.stride = model.stride

    @torch.no_grad()
    def forward(self, ims, size: int | tuple[int, int] = 640, augment: bool = False):
        if isinstance(ims, torch.Tensor):
            return self.model(ims, augment=augment)
        batch = list(ims) if isinstance(ims, (list, tuple)) else [ims]
        read = [read_rgb(im) for im in batch]
        arrays, files = [a for a, _ in read], [f for _, f in read]
        shape = self.batch_shape([a.shape[:2] for a in arrays], size)
        x = np.stack([letterbox(a, shape, auto=False)[0] for a in arrays], 0)
        device = next(self.model.parameters()).device
        x = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).to(device).float() / 255
        pred = self.model(x, augment=augment)[0]
        dets = nms.non_max_suppression(pred, self.conf, self.iou, self.classes, self.agnostic, self.multi_label,
                                       max_det=self.max_det)
        for det, a in zip(dets, arrays):
            det[:, :4] = boxes.scale_boxes(x.shape[2:], det[:, :4], a.shape[:2])
        return Detections(arrays, dets, files, self.names)

    def batch_shape(self, shapes: list[tuple[int, int]], size) -> tuple[int, int]:
        """(h, w): the largest of the images scaled so their long side is ``size``, rounded up to the stride."""
        size = (size, size) if isinstance(size, int) else tuple(size)
        stride = int(self.stride.max())
        scaled = [(h * min(size) / max(h, w), w * min(size) / max(h, w)) for h, w in shapes]
        h, w = (max(s[k] for s in scaled) for k in (0, 1))
        return math.ceil(h / stride) * stride, math.ceil(w / stride) * stride
