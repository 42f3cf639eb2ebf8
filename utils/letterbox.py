"""Letterbox resize: fit an image into a target shape keeping its aspect ratio, pad with grey 114."""
from __future__ import annotations

import cv2
import numpy as np

PAD_VALUE = 114


def letterbox(
    im: np.ndarray,
    new_shape=(640, 640),
    color=(PAD_VALUE, PAD_VALUE, PAD_VALUE),
    auto: bool = True,
    scale_fill: bool = False,
    scaleup: bool = True,
    stride: int = 32,
):
    """Resize and pad ``im`` (H, W, C uint8) to ``new_shape`` (h, w) or an int.

    ``auto`` pads only to the next multiple of ``stride`` (detect.py's minimum rectangle); ``scaleup=False``
    never enlarges; ``scale_fill`` stretches without padding. The padding is split in two halves with
    top = round(dh - 0.1), bottom = round(dh + 0.1) (same for left/right), as upstream.

    Returns (image, (ratio_w, ratio_h), (dw, dh)) where dw, dh are the float half-paddings.
    """
    shape = im.shape[:2]  # (h, w)
    if isinstance(new_shape, int):
        new_shape = (new_shape, new_shape)
    r = min(new_shape[0] / shape[0], new_shape[1] / shape[1])
    if not scaleup:
        r = min(r, 1.0)
    ratio = r, r
    new_unpad = int(round(shape[1] * r)), int(round(shape[0] * r))  # (w, h)
    dw, dh = new_shape[1] - new_unpad[0], new_shape[0] - new_unpad[1]
    if auto:
        dw, dh = np.mod(dw, stride), np.mod(dh, stride)
    elif scale_fill:
        dw, dh = 0.0, 0.0
        new_unpad = (new_shape[1], new_shape[0])
        ratio = new_shape[1] / shape[1], new_shape[0] / shape[0]
    dw /= 2
    dh /= 2
    if shape[::-1] != new_unpad:
        im = cv2.resize(im, new_unpad, interpolation=cv2.INTER_LINEAR)
    top, bottom = int(round(dh - 0.1)), int(round(dh + 0.1))
    left, right = int(round(dw - 0.1)), int(round(dw + 0.1))
    im = cv2.copyMakeBorder(im, top, bottom, left, right, cv2.BORDER_CONSTANT, value=color)
    return im, ratio, (float(dw), float(dh))
