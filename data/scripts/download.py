"""Explicit dataset downloads (only when the user asks): fetch an archive, extract it, fail clearly offline."""
from __future__ import annotations

import argparse
import shutil
import tarfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path


def fetch(url: str, dest_dir: Path, timeout: float = 60.0) -> Path:
    """Download ``url`` into ``dest_dir`` (kept if already there); ConnectionError names URL and folder."""
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / Path(url.split("?")[0]).name
    if target.is_file() and target.stat().st_size > 0:
        return target
    tmp = target.with_name(target.name + ".part")
    print(f"Downloading {url} -> {target}")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r, open(tmp, "wb") as f:
            shutil.copyfileobj(r, f)
    except (urllib.error.URLError, OSError) as e:
        tmp.unlink(missing_ok=True)
        raise ConnectionError(f"could not download {url} ({e}). Offline? Download it by hand and extract it "
                              f"into {dest_dir}") from e
    tmp.replace(target)
    return target


def extract(archive: Path, dest_dir: Path) -> None:
    """Extract a .zip or .tar(.gz) archive into ``dest_dir``, refusing members that escape it."""
    dest_dir = Path(dest_dir).resolve()
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            for name in z.namelist():
                _check_inside(dest_dir, name)
            z.extractall(dest_dir)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as t:
            t.extractall(dest_dir, filter="data")
    else:
        raise ValueError(f"{archive}: not a zip or tar archive")


def _check_inside(dest: Path, name: str) -> None:
    if not (dest / name).resolve().is_relative_to(dest):
        raise ValueError(f"archive member {name!r} would be written outside {dest}")


def fetch_and_extract(url: str, dest_dir: Path) -> None:
    """Download ``url`` into ``dest_dir``, extract it there and delete the archive."""
    archive = fetch(url, dest_dir)
    extract(archive, dest_dir)
    archive.unlink()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="Download and extract a dataset archive")
    ap.add_argument("url")
    ap.add_argument("--dir", default="../datasets", help="folder to extract into")
    args = ap.parse_args()
    fetch_and_extract(args.url, Path(args.dir))
