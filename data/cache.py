"""The label cache: verified labels saved once, reused while no image or label file changed.

The key hashes every file's path, size **and** mtime (upstream hashed sizes only, so an edit keeping the byte
count went unnoticed) plus the class count used for verification and the cache version. The file is an
``.npz`` of plain arrays loaded with ``allow_pickle=False``: a cache found in a dataset folder can never
run code.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np

from data.verify import Record

LOGGER = logging.getLogger(__name__)
VERSION = "kd-1"


def cache_root() -> Path:
    """The folder for derived data (VOC conversions, fallback label caches, .npy image caches):
    env ``YOLO_CACHE_DIR`` or ``~/.cache/yolov5-kd``."""
    return Path(os.environ.get("YOLO_CACHE_DIR", Path.home() / ".cache" / "yolov5-kd"))


def files_hash(files: list[str], nc: int | None) -> str:
    """sha256 over (path, size, mtime_ns) of each existing file, the class count and the cache version."""
    h = hashlib.sha256(f"{VERSION}|{nc}".encode())
    for f in files:
        try:
            st = os.stat(f)
            h.update(f"{f}|{st.st_size}|{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{f}|missing\n".encode())
    return h.hexdigest()


def fallback_path(path: Path) -> Path:
    """Where to keep the cache of ``path`` when its own folder is read-only: in the user cache folder."""
    key = hashlib.sha256(str(Path(path).resolve()).encode()).hexdigest()[:16]
    return cache_root() / "labels" / f"{Path(path).name.split('.')[0]}-{key}.cache.npz"


def is_writeable(folder: Path) -> bool:
    """True if ``folder`` exists and its mode allows writing. The mode bits are checked as well as
    ``os.access`` so that a root process does not write into a dataset folder marked read-only."""
    try:
        return os.access(folder, os.W_OK) and bool(os.stat(folder).st_mode & 0o222)
    except OSError:
        return False


def save_cache(path: Path, records: list[Record], hash_: str, prefix: str = "") -> Path | None:
    """Write the cache to ``path`` (a ``.cache.npz``); on a read-only folder warn and use the fallback."""
    arrays = _to_arrays(records, hash_)
    path = Path(path)
    targets = [path, fallback_path(path)]
    if not is_writeable(path.parent):
        LOGGER.warning(f"{prefix}WARNING: cache dir {path.parent} is not writeable, caching in {targets[1].parent}")
        targets = targets[1:]
    for target in targets:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(target.name + f".{os.getpid()}.tmp")
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)
            os.replace(tmp, target)
            return target
        except OSError as e:
            LOGGER.warning(f"{prefix}WARNING: cannot write cache {target} ({e})")
    LOGGER.warning(f"{prefix}WARNING: label cache not saved; labels will be verified again next time")
    return None


def load_cache(path: Path, hash_: str) -> tuple[list[Record] | None, Path]:
    """(records, file) from ``path`` or its fallback when one has the same version and hash, else
    (None, path)."""
    for target in (Path(path), fallback_path(path)):
        if not target.is_file():
            continue
        try:
            with np.load(target, allow_pickle=False) as z:
                meta = json.loads(bytes(z["meta"]).decode())
                if meta.get("version") != VERSION or meta.get("hash") != hash_:
                    continue
                return _from_arrays(z, meta), target
        except (OSError, ValueError, KeyError) as e:
            LOGGER.warning(f"WARNING: ignoring unreadable cache {target}: {e}")
    return None, Path(path)


def _to_arrays(records: list[Record], hash_: str) -> dict:
    seg_pts = [s for r in records for s in r.segments]
    meta = {
        "version": VERSION,
        "hash": hash_,
        "status": [r.status for r in records],
        "msgs": [r.msg for r in records],
    }
    return {
        "meta": np.frombuffer(json.dumps(meta).encode(), np.uint8),
        "im_files": np.array([r.im_file for r in records], dtype=str),
        "counts": np.array([len(r.labels) for r in records], np.int64),
        "labels": np.concatenate([r.labels for r in records] or [np.zeros((0, 5))]).astype(np.float32),
        "shapes": np.array([r.shape for r in records], np.int64).reshape(-1, 2),
        "seg_per_image": np.array([len(r.segments) for r in records], np.int64),
        "seg_sizes": np.array([len(s) for s in seg_pts], np.int64),
        "seg_points": np.concatenate(seg_pts or [np.zeros((0, 2))]).astype(np.float32),
    }


def _from_arrays(z, meta: dict) -> list[Record]:
    labels = np.split(z["labels"], np.cumsum(z["counts"])[:-1])
    segs = np.split(z["seg_points"], np.cumsum(z["seg_sizes"])[:-1]) if len(z["seg_sizes"]) else []
    seg_groups = np.split(np.arange(len(segs)), np.cumsum(z["seg_per_image"])[:-1])
    out = []
    for i, f in enumerate(z["im_files"].tolist()):
        segments = [segs[j] for j in seg_groups[i]] if len(segs) else []
        shape = tuple(int(v) for v in z["shapes"][i])
        out.append(Record(f, meta["status"][i], labels[i], shape, segments, meta["msgs"][i]))
    return out
