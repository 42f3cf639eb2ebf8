"""Run-directory naming: runs/train/exp, exp2, exp3, ... as upstream."""
from __future__ import annotations

from pathlib import Path


def increment_path(path, exist_ok: bool = False, sep: str = "", mkdir: bool = False) -> Path:
    """``path`` if free (or ``exist_ok``), else the first free ``{path}{sep}{n}`` for n = 2, 3, ...

    A file keeps its suffix (``runs/exp.txt`` -> ``runs/exp2.txt``).
    """
    path = Path(path)
    if path.exists() and not exist_ok:
        stem, suffix = (path.with_suffix(""), path.suffix) if path.is_file() else (path, "")
        n = 2
        while Path(f"{stem}{sep}{n}{suffix}").exists():
            n += 1
        path = Path(f"{stem}{sep}{n}{suffix}")
    if mkdir:
        path.mkdir(parents=True, exist_ok=True)
    return path
