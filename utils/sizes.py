"""Input image sizes: rounding ``--imgsz`` up to what the model's strides can tile."""
from __future__ import annotations

import logging
import math

LOGGER = logging.getLogger(__name__)


def check_img_size(imgsz, stride: int, floor: int | None = None, warn: bool = True):
    """Round ``imgsz`` (an int, or a sequence such as (h, w)) up to multiples of ``stride``.

    Each size is at least ``floor`` (default ``2 * stride``, train.py's; detect.py passes ``stride``, val.py and
    export.py pass 0). With ``warn`` a changed size logs
    'WARNING: --img-size {imgsz} must be multiple of max stride {stride}, updating to {new}'.
    Returns an int for an int and a list for a sequence (same length; pairing one size is the caller's choice).
    """
    floor = 2 * stride if floor is None else floor
    if isinstance(imgsz, (list, tuple)):
        imgsz = [int(x) for x in imgsz]
        new = [max(math.ceil(int(x) / stride) * stride, floor) for x in imgsz]
        changed = new != imgsz
    else:
        new = max(math.ceil(int(imgsz) / stride) * stride, floor)
        changed = new != imgsz
    if warn and changed:
        LOGGER.warning(f"WARNING: --img-size {imgsz} must be multiple of max stride {stride}, updating to {new}")
    return new
