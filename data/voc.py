"""Pascal VOC XML -> YOLO txt, written into a separate cache folder (the VOC source is only read).

Conversion rules (spec 4.8): skip ``<difficult>1`` objects and names not in the class list; the box is
(xmin - 1, ymin - 1, xmax - 1, ymax - 1) / (width, height) of ``<size>`` (VOC pixels are 1-based), clipped
to [0, 1]; boxes of zero width or height are dropped with a warning. Near-duplicate boxes are kept (only
exact duplicates are removed later, by label verification). Images are found by ``<filename>`` in
``JPEGImages/`` or by the image id, never through ``<path>`` (it often holds another machine's path).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from data.images import IMG_FORMATS

LOGGER = logging.getLogger("yolov5.data")
CONVERTER_VERSION = 1


@dataclass
class VocImage:
    """One parsed annotation: the resolved image file, YOLO rows (cls, x, y, w, h) and warnings."""

    image: Path | None
    rows: list = field(default_factory=list)
    notes: list = field(default_factory=list)


def is_voc_split(p: Path) -> bool:
    """True for ``<root>/ImageSets/Main/<split>.txt`` where ``<root>`` has ``Annotations/``."""
    p = Path(p)
    return p.suffix == ".txt" and p.parent.name == "Main" and p.parent.parent.name == "ImageSets" and (
        p.parents[2] / "Annotations").is_dir()


def find_image(voc_root: Path, filename: str | None, image_id: str) -> Path | None:
    """``JPEGImages/<filename>``, else ``JPEGImages/<id>.<ext>`` for any image extension/case."""
    folder = voc_root / "JPEGImages"
    if filename and (folder / Path(filename).name).is_file():
        return folder / Path(filename).name
    for ext in IMG_FORMATS:
        for e in (ext, ext.upper()):
            if (folder / f"{image_id}.{e}").is_file():
                return folder / f"{image_id}.{e}"
    return None


def parse_annotation(xml_file: Path, voc_root: Path, names: list[str]) -> VocImage:
    """Parse one VOC XML file into YOLO rows (see module docstring for the rules)."""
    try:
        root = ET.parse(xml_file).getroot()
    except (ET.ParseError, OSError) as e:
        return VocImage(None, notes=[f"{xml_file}: unreadable XML ({e}), image skipped"])
    image = find_image(voc_root, root.findtext("filename"), xml_file.stem)
    if image is None:
        return VocImage(None, notes=[f"{xml_file}: image {root.findtext('filename')!r} not in JPEGImages, skipped"])
    w, h = _image_size(root, image)
    out = VocImage(image)
    for k, obj in enumerate(root.iter("object")):
        name = (obj.findtext("name") or "").strip()
        if (obj.findtext("difficult") or "0").strip() == "1":
            continue
        if name not in names:
            out.notes.append(f"{xml_file}: object {k} class {name!r} not in names, skipped")
            continue
        row = _box_row(obj.find("bndbox"), w, h)
        if row is None:
            out.notes.append(f"{xml_file}: object {k} ({name}) has zero width or height, dropped")
            continue
        out.rows.append((names.index(name), *row))
    return out


def _image_size(root, image: Path) -> tuple[int, int]:
    try:
        w, h = int(float(root.findtext("size/width"))), int(float(root.findtext("size/height")))
        if w > 0 and h > 0:
            return w, h
    except (TypeError, ValueError):
        pass
    with Image.open(image) as im:  # <size> missing or zero: read it from the image
        return im.size


def _box_row(bndbox, w: int, h: int):
    try:
        x1, y1, x2, y2 = (float(bndbox.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
    except (AttributeError, TypeError, ValueError):
        return None
    x1, x2 = (min(max((v - 1) / w, 0.0), 1.0) for v in (x1, x2))
    y1, y2 = (min(max((v - 1) / h, 0.0), 1.0) for v in (y1, y2))
    if x2 <= x1 or y2 <= y1:
        return None
    return (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1


def convert_split(split_file: Path, names: list[str], out_dir: Path) -> Path:
    """Convert one ``ImageSets/Main/<split>.txt`` into ``out_dir/labels/<id>.txt`` files plus an image list
    ``out_dir/<root>_<split>.txt`` (absolute paths); returns the list file. Skips the work when a manifest
    shows the same XML files (path, size, mtime) and names were converted before."""
    split_file = Path(split_file).resolve()
    voc_root = split_file.parents[2]
    ids = [ln.split()[0] for ln in split_file.read_text().splitlines() if ln.strip()]
    xmls = [voc_root / "Annotations" / f"{i}.xml" for i in ids]
    list_file = out_dir / f"{voc_root.name}_{split_file.stem}.txt"
    manifest = list_file.with_suffix(".manifest.json")
    key = _manifest_key(split_file, xmls, names)
    if list_file.is_file() and manifest.is_file() and json.loads(manifest.read_text()).get("key") == key:
        return list_file
    LOGGER.warning(f"Converting VOC {split_file} -> {out_dir} (first use; the source is not modified)")
    labels_dir = out_dir / "labels"
    labels_dir.mkdir(parents=True, exist_ok=True)
    images = []
    for xml in xmls:
        ann = parse_annotation(xml, voc_root, names)
        for note in ann.notes:
            LOGGER.warning(f"WARNING: {note}")
        if ann.image is None:
            continue
        images.append(str(ann.image))
        lines = [f"{c} {x:.6f} {y:.6f} {w:.6f} {h:.6f}" for c, x, y, w, h in ann.rows]
        _write(labels_dir / f"{ann.image.stem}.txt", "\n".join(lines) + ("\n" if lines else ""))
    _write(list_file, "\n".join(images) + "\n")
    _write(manifest, json.dumps({"key": key, "source": str(split_file), "names": names}))
    return list_file


def _manifest_key(split_file: Path, xmls, names) -> str:
    h = hashlib.sha256(f"{CONVERTER_VERSION}|{split_file}|{split_file.stat().st_mtime_ns}|{names}".encode())
    for x in xmls:
        try:
            st = x.stat()
            h.update(f"{x}|{st.st_size}|{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{x}|missing\n".encode())
    return h.hexdigest()


def _write(path: Path, text: str) -> None:
    """Atomic write (temp + rename) so an interrupted conversion never leaves a half file."""
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
