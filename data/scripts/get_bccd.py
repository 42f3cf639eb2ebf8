"""Download BCCD (Shenggan/BCCD_Dataset, MIT) in VOC layout: ``python -m data.scripts.get_bccd --dir DIR``."""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from data.scripts import download

URL = "https://github.com/Shenggan/BCCD_Dataset/archive/refs/heads/master.zip"


def main(root: Path) -> Path:
    """Fetch the repository archive and move its ``BCCD/`` folder (Annotations, ImageSets, JPEGImages)
    to ``root``. Offline it raises ConnectionError naming the URL and the folder."""
    root = Path(root)
    work = root.parent / (root.name + "_download")
    download.fetch_and_extract(URL, work)
    src = next(work.glob("*/BCCD"), None)
    if src is None:
        raise FileNotFoundError(f"{URL} did not contain a BCCD/ folder (looked in {work})")
    shutil.move(str(src), str(root))
    shutil.rmtree(work, ignore_errors=True)
    return root


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dir", default="../datasets/BCCD", help="target folder (becomes the VOC root)")
    main(Path(ap.parse_args().dir))
