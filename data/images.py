"""Finding and reading images: accepted formats, source listing, image -> label path rule, 8-bit BGR decoding."""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

IMG_FORMATS = ("bmp", "dng", "jpeg", "jpg", "mpo", "png", "tif", "tiff", "webp", "pfm")
VID_FORMATS = ("asf", "avi", "gif", "m4v", "mkv", "mov", "mp4", "mpeg", "mpg", "ts", "wmv")
EXIF_ORIENTATION = 274  # the EXIF tag id of "Orientation"


def is_image(path: str | Path) -> bool:
    """True when the file extension is an accepted image format (any letter case)."""
    return Path(path).suffix[1:].lower() in IMG_FORMATS


def list_image_files(source) -> list[str]:
    """Sorted absolute image paths from a folder, a txt list, or a list of either.

    In a txt list, lines starting with ``./`` are relative to the txt file's folder (upstream rule); other
    relative lines are tried against that folder and then the current directory. Raises FileNotFoundError
    naming the missing source.
    """
    files: list[str] = []
    for src in source if isinstance(source, (list, tuple)) else [source]:
        p = Path(src)
        if p.is_dir():
            files += [str(f) for f in p.rglob("*") if f.is_file()]
        elif p.is_file():
            files += _read_list(p)
        else:
            raise FileNotFoundError(f"{src} does not exist (expected an image folder or a txt list of images)")
    return sorted({os.path.abspath(f) for f in files if is_image(f)})


def _read_list(txt: Path) -> list[str]:
    out = []
    for line in txt.read_text(encoding="utf-8", errors="replace").splitlines():
        line = line.strip()
        if not line:
            continue
        p = Path(line)
        if not p.is_absolute():
            p = txt.parent / p if line.startswith("./") or (txt.parent / p).exists() else p
        out.append(str(p))
    return out


def img2label_paths(im_files: list[str], labels_dir: str | Path | None = None) -> list[str]:
    """Label path for each image.

    Default (upstream rule): replace the *last* ``/images/`` path component with ``/labels/`` and the
    extension with ``.txt``. With ``labels_dir``, labels are looked up flat by image stem:
    ``labels_dir/<stem>.txt``.
    """
    if labels_dir is not None:
        return [str(Path(labels_dir) / (Path(f).stem + ".txt")) for f in im_files]
    sa, sb = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    out = []
    for f in im_files:
        head, sep, tail = f.rpartition(sa)
        base = (head + sb + tail) if sep else f
        out.append(os.path.splitext(base)[0] + ".txt")
    return out


def exif_size(img: Image.Image) -> tuple[int, int]:
    """(w, h) of a PIL image as displayed, i.e. after its EXIF orientation (5-8 swap the sides)."""
    w, h = img.size
    try:
        orientation = img.getexif().get(EXIF_ORIENTATION, 1)
    except Exception:  # malformed EXIF is not fatal: use the stored size
        orientation = 1
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def read_image(path: str | Path) -> np.ndarray:
    """Decode an image as an (H, W, 3) uint8 BGR array with its EXIF orientation applied.

    OpenCV's IMREAD_COLOR already applies EXIF orientation and converts grayscale, RGBA and 16-bit images
    to 8-bit BGR; PIL is the fallback for files OpenCV cannot decode. Raises OSError when neither can.
    """
    im = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if im is not None:
        return im
    try:
        with Image.open(path) as pil:
            return _pil_to_bgr(pil)
    except Exception as e:
        raise OSError(f"cannot decode image {path}: {e}") from e


def _pil_to_bgr(pil: Image.Image) -> np.ndarray:
    from PIL import ImageOps

    pil = ImageOps.exif_transpose(pil)
    if pil.mode in ("I;16", "I;16B", "I", "F"):  # high bit depth: scale to 8 bits
        a = np.asarray(pil, dtype=np.float32)
        a = (a / max(float(a.max()), 1.0) * 255.0).astype(np.uint8)
        return cv2.cvtColor(a, cv2.COLOR_GRAY2BGR)
    return cv2.cvtColor(np.asarray(pil.convert("RGB")), cv2.COLOR_RGB2BGR)
