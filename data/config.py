"""Dataset yaml: load, resolve paths, convert VOC splits, optional explicit download. Nothing is exec'd.

Path rules, in order, for a relative ``path:`` (the dataset root):
1. the yaml's own folder, 2. ``DATASETS_DIR`` (env var; default ``<repo>/../datasets``), 3. the default
``<repo>/../datasets`` when ``DATASETS_DIR`` points elsewhere (where data converted from a read-only
``DATASETS_DIR`` goes, see ``writable_datasets_dir``), 4. the repo root (upstream's rule, so
``path: ../datasets/coco128`` keeps working). A root found nowhere is expected where a download or
conversion can write it: ``writable_datasets_dir() / path``. ``train``/``val``/``test`` entries are
relative to that root (or absolute); each is an image folder, a txt list of images, a VOC
``ImageSets/Main/<split>.txt`` (converted on first use into the cache folder), or a list of these.
An optional ``labels:`` folder holds ``<image stem>.txt`` labels for every split (VOC sets it).

Where entries may point: anywhere. Absolute paths and ``../`` are allowed, as upstream allows them: the yaml only
says where the data is, and nothing is ever written there (label caches and VOC conversions go to the cache
folder). What must hold is that they exist: a missing ``train``/``val`` entry or ``labels:`` folder is a
FileNotFoundError naming the yaml, the key and the resolved path (with the download hint when the yaml has one);
a missing ``test`` entry is only a warning naming them (``val.py --task test`` then fails on it).
"""
from __future__ import annotations

import importlib
import logging
import os
import re
from pathlib import Path

import yaml

from data import cache, voc

LOGGER = logging.getLogger("yolov5.data")
ROOT = Path(__file__).resolve().parents[1]
SPLITS = ("train", "val", "test")


def default_datasets_dir() -> Path:
    """``<repo>/../datasets``: the datasets root without ``DATASETS_DIR``, and the writable fallback."""
    return (ROOT.parent / "datasets").resolve()


def datasets_dir() -> Path:
    """The datasets root: env ``DATASETS_DIR`` (relative to the CWD) or ``<repo>/../datasets``."""
    env = os.environ.get("DATASETS_DIR")
    return Path(env).resolve() if env else default_datasets_dir()


def writable_datasets_dir() -> Path:
    """Where downloads and conversions write: ``DATASETS_DIR`` when it (or its nearest existing parent) is
    writeable, else ``<repo>/../datasets``. So a read-only shared ``DATASETS_DIR`` (CI) serves as the source
    of the raw data while the converted copy lands beside the repo, where ``resolve_root`` looks next."""
    first = datasets_dir()
    existing = next(p for p in [first, *first.parents] if p.exists())
    return first if cache.is_writeable(existing) else default_datasets_dir()


def check_dataset(data, autodownload: bool = False) -> dict:
    """Load and resolve a dataset yaml (path, or an already-loaded dict).

    Returns a new dict with absolute ``path``, ``train``, ``val``, ``test`` (str, list of str, or None),
    ``names`` (dict int -> str), ``nc`` (= len(names)), ``yaml_file`` (or None) and ``labels`` (a labels
    folder or None). Raises FileNotFoundError naming the missing paths (and the download source).
    """
    yaml_file, d = _load(data)
    for k in ("train", "val"):
        if k not in d:
            raise KeyError(f"{yaml_file or 'dataset dict'}: required key '{k}:' is missing")
    d["names"] = parse_names(d.get("names"), d.get("nc"))
    d["nc"] = len(d["names"])
    base = yaml_file.parent if yaml_file else Path.cwd()
    root = resolve_root(d.get("path"), base)
    d.update(path=str(root), yaml_file=str(yaml_file) if yaml_file else None)
    for k in SPLITS:
        d[k] = _resolve_entries(d.get(k), root)
    if d.get("labels"):
        d["labels"] = str(_join(root, d["labels"]))
    missing = [f"{k}: {p}" for k in ("val", "train") for p in _as_list(d[k]) if not Path(p).exists()]
    if missing:
        _download_or_fail(d, root, missing, autodownload)
    source = yaml_file or "dataset dict"
    for p in _as_list(d["test"]):
        if not Path(p).exists() and not voc.is_voc_split(Path(p)):  # VOC: _convert_voc warns
            LOGGER.warning(f"WARNING: {source}: test: {p} not found (val.py --task test will fail)")
    if d.get("labels") and not Path(d["labels"]).is_dir():
        raise FileNotFoundError(f"{source}: labels: {d['labels']} is not a folder (it should hold the "
                                "<image stem>.txt label files)")
    return _convert_voc(d, root)


def load_names(data) -> tuple[Path | None, dict[int, str]]:
    """(yaml file or None, class names) of a dataset yaml or dict, without resolving or checking its paths."""
    yaml_file, d = _load(data)
    return yaml_file, parse_names(d.get("names"), d.get("nc"))


def _load(data):
    if isinstance(data, dict):
        return None, dict(data)
    f = Path(data)
    if not f.is_file() and not f.is_absolute() and (ROOT / "data" / f).is_file():
        f = ROOT / "data" / f  # `--data BCCD.yaml` finds the shipped yaml
    if not f.is_file():
        raise FileNotFoundError(f"dataset yaml {data} not found (also looked in {ROOT / 'data'})")
    d = yaml.safe_load(f.read_text(encoding="utf-8"))
    if not isinstance(d, dict):
        raise ValueError(f"{f}: a dataset yaml must be a mapping with train/val/names keys")
    return f.resolve(), d


def parse_names(names, nc=None) -> dict[int, str]:
    """Names as a list or {int: str} dict -> dict; without names, ``nc`` gives ``class0..``."""
    if names is None:
        if nc is None:
            raise KeyError("dataset yaml needs 'names:' (a list or {id: name} dict) or 'nc:'")
        return {i: f"class{i}" for i in range(int(nc))}
    if isinstance(names, (list, tuple)):
        names = dict(enumerate(names))
    if not isinstance(names, dict) or not all(isinstance(k, int) for k in names):
        raise ValueError(f"'names:' must be a list or a dict with integer keys, got {names!r:.200}")
    if sorted(names) != list(range(len(names))):
        raise ValueError(f"'names:' keys must be 0..{len(names) - 1} without gaps, got {sorted(names)}")
    if nc is not None and int(nc) != len(names):
        LOGGER.warning(f"WARNING: nc={nc} differs from len(names)={len(names)}; using len(names)")
    return {int(k): str(v) for k, v in sorted(names.items())}


def resolve_root(path, base: Path) -> Path:
    """The dataset root for a yaml ``path:`` value (see the module docstring for the order)."""
    if not path:
        return base.resolve()
    p = Path(path).expanduser()
    if p.is_absolute():
        return p
    candidates = [base / p, datasets_dir() / p, default_datasets_dir() / p, ROOT / p]
    for c in candidates:
        if c.exists():
            return c.resolve()
    return (ROOT / p if str(path).startswith("..") else writable_datasets_dir() / p).resolve()


def _join(root: Path, entry) -> Path:
    p = Path(str(entry)).expanduser()
    if p.is_absolute():
        return p
    q = (root / p).resolve()
    if not q.exists() and str(entry).startswith("../") and (root / str(entry)[3:]).exists():
        q = (root / str(entry)[3:]).resolve()  # upstream's retry without a leading ../
    return q


def _resolve_entries(value, root: Path):
    if value is None or value == "":
        return None
    if isinstance(value, (list, tuple)):
        return [str(_join(root, v)) for v in value]
    return str(_join(root, value))


def _as_list(value) -> list[str]:
    return [] if value is None else list(value) if isinstance(value, list) else [value]


def _convert_voc(d: dict, root: Path) -> dict:
    entries = [p for k in SPLITS for p in _as_list(d[k])]
    if not any(voc.is_voc_split(Path(p)) for p in entries):
        return d
    names = [d["names"][i] for i in range(d["nc"])]
    out_dir = voc_cache_dir(root)
    for k in SPLITS:
        conv = []
        for p in _as_list(d[k]):
            if not voc.is_voc_split(Path(p)):
                conv.append(p)
            elif Path(p).is_file():
                conv.append(str(voc.convert_split(Path(p), names, out_dir)))
            else:  # e.g. BCCD's test split, withheld from some copies
                LOGGER.warning(f"WARNING: {k} split {p} not found, {k} set to None")
        d[k] = conv if isinstance(d[k], list) else (conv[0] if conv else None)
    if d.get("labels") is None:
        d["labels"] = str(out_dir / "labels")
    return d


def voc_cache_dir(root: Path) -> Path:
    """Where the YOLO labels of a VOC dataset at ``root`` go: ``<cache>/voc/<name>-<hash of root>``."""
    import hashlib

    key = hashlib.sha256(str(Path(root).resolve()).encode()).hexdigest()[:12]
    return cache.cache_root() / "voc" / f"{Path(root).name}-{key}"


def _download_or_fail(d: dict, root: Path, missing: list[str], autodownload: bool) -> None:
    src = d.get("download")
    where = (f"{d.get('yaml_file') or 'dataset dict'}: dataset not found: {', '.join(missing)} (dataset root {root}; "
             f"DATASETS_DIR={datasets_dir()})")
    if not src:
        raise FileNotFoundError(where + "; set DATASETS_DIR or `path:` to the folder holding the dataset")
    src = str(src).strip()
    if not autodownload:
        how = (f"run `python -m data.scripts.{src} --help`" if re.fullmatch(r"[A-Za-z_]\w*", src)
               else f"download {src} and extract it")
        raise FileNotFoundError(where + f"; to get it, {how} (files go to {root}), or call check_dataset(..., "
                                "autodownload=True)")
    if re.match(r"^https?://", src):
        from data.scripts import download

        download.fetch_and_extract(src, root.parent)
    elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", src) and (ROOT / "data" / "scripts" / f"{src}.py").is_file():
        importlib.import_module(f"data.scripts.{src}").main(root)
    else:
        raise ValueError(f"download: {src!r:.80} is neither a URL nor a script in data/scripts; "
                         "code in yamls is never executed")
    still = [p for p in missing if not Path(p.split(": ", 1)[1]).exists()]
    if still:
        raise FileNotFoundError(f"download finished but {', '.join(still)} still missing")
