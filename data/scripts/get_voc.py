"""Download Pascal VOC 2007 + 2012: ``python -m data.scripts.get_voc --dir DIR`` -> DIR/VOCdevkit/VOC{2007,2012}."""
from __future__ import annotations

import argparse
from pathlib import Path

from data.scripts import download

URLS = (
    "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar",
    "http://host.robots.ox.ac.uk/pascal/VOC/voc2007/VOCtrainval_06-Nov-2007.tar",
    "http://host.robots.ox.ac.uk/pascal/VOC/voc2007/VOCtest_06-Nov-2007.tar",
)


def main(root: Path) -> Path:
    """Fetch and extract the three VOC archives into ``root`` (about 3.6 GB)."""
    for url in URLS:
        download.fetch_and_extract(url, Path(root))
    return Path(root)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dir", default="../datasets/VOC", help="target folder")
    main(Path(ap.parse_args().dir))
