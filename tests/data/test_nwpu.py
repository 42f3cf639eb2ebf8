"""NWPU VHR-10: the converter on a small folder in the published layout, the shipped yamls, a 1-epoch KD run."""
from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from data import config
from data.scripts import nwpu2yolo
from tests.data.synth import write_image

ROOT = Path(__file__).resolve().parents[2]
W, H = 96, 80
# BGR colour per NWPU class id (1..10); background grey 60 is far from all of them
COLOURS = {1: (255, 0, 0), 2: (0, 255, 0), 3: (0, 0, 255), 4: (255, 255, 0), 5: (255, 0, 255), 6: (0, 255, 255),
           7: (255, 255, 255), 8: (0, 0, 0), 9: (0, 128, 255), 10: (255, 128, 0)}
# drawn boxes (c, x1, y1, x2, y2) per positive image, pixels; every image holds class k and class 1 (k = 2..10)
BOXES = {f"{k:03d}": [(k, 8 + 2 * k, 10, 38 + 2 * k, 40), (1, 56, 44, 86, 72)] for k in range(2, 11)}
BOXES["001"] = [(1, 10, 20, 40, 50)]
# written lines of some files: spaces, a wrong corner order, a malformed line, a bad class, a box past the
# edge (clipped), a trailing blank line; every other file is written plainly
SPECIAL = {
    "001": "(10,20),(40,50),1\n\n",
    "002": "( 12 , 10 ) , ( 42 , 40 ) , 2\n(86,72),(56,44),1\r\n",  # second line: corners swapped, CRLF
    "003": "(14,10),(44,40),3\n(56,44),(86,72)\nthis is not a box\n(1,1),(5,5),11\n(56,44),(86,72),1\n  \n",
    "004": "(16,10),(46,40),4\n(56,44),(120,100),1\n",  # drawn box 56..86 x 44..72; GT spills over the edge
}
EXPECTED_BOXES = {0: 10, **{k - 1: 1 for k in range(2, 11)}}  # 0-based class -> boxes over both splits


def _draw(path: Path, boxes) -> None:
    im = np.full((H, W, 3), 60, np.uint8)
    for c, x1, y1, x2, y2 in boxes:
        im[y1:y2, x1:x2] = COLOURS[c]
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), im, [cv2.IMWRITE_JPEG_QUALITY, 100])


def make_nwpu(root: Path) -> Path:
    """A 10-positive, 2-negative folder in the published NWPU VHR-10 layout."""
    for stem, boxes in BOXES.items():
        _draw(root / nwpu2yolo.POSITIVE / f"{stem}.jpg", boxes)
        text = SPECIAL.get(stem) or "".join(f"({x1},{y1}),({x2},{y2}),{c}\n" for c, x1, y1, x2, y2 in boxes)
        (root / nwpu2yolo.TRUTH).mkdir(parents=True, exist_ok=True)
        (root / nwpu2yolo.TRUTH / f"{stem}.txt").write_text(text, newline="")
    for stem in ("001", "002"):
        write_image(root / nwpu2yolo.NEGATIVE / f"{stem}.jpg", W, H)
    return root


def _digest(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _read(label_file: Path) -> np.ndarray:
    return np.array([[float(v) for v in line.split()] for line in label_file.read_text().splitlines()]).reshape(-1, 5)


def _labels(out: Path, split: str, stem: str) -> np.ndarray:
    return _read(out / "labels" / split / f"{stem}.txt")


def _where(out: Path, stem: str) -> str:
    return next(s for s in ("train", "val") if (out / "labels" / s / f"{stem}.txt").is_file())


@pytest.fixture
def nwpu_src(tmp_path) -> Path:
    return make_nwpu(tmp_path / nwpu2yolo.SOURCE_NAME)


def test_convert_boxes_split_and_report(nwpu_src, tmp_path, capsys):
    before = _digest(nwpu_src)
    out = tmp_path / "out"
    summary = nwpu2yolo.cli(["--src", str(nwpu_src), "--out", str(out), "--include-negatives"])
    printed = capsys.readouterr().out
    assert _digest(nwpu_src) == before  # the published folder is only read

    # images per split: 10 positives 8/2, the 2 negatives join train as background with empty labels
    assert summary.images == {"train": 10, "val": 2, "background": 2}
    assert len(list((out / "images" / "train").iterdir())) == 10 and len(list((out / "images" / "val").iterdir())) == 2
    assert (out / "labels" / "train" / "neg_001.txt").read_text() == ""
    assert (out / "images" / "train" / "neg_002.jpg").is_symlink()

    # boxes per class, over both splits, as counted from the written files
    counts = np.zeros(10, int)
    for f in (out / "labels").rglob("*.txt"):
        np.add.at(counts, _read(f)[:, 0].astype(int), 1)
    assert counts.tolist() == [EXPECTED_BOXES.get(k, 0) for k in range(10)]
    assert sum(summary.boxes["train"].values()) + sum(summary.boxes["val"].values()) == 19

    # coordinates: plain, spaced, swapped (fixed to min/max) and clipped lines
    np.testing.assert_allclose(_labels(out, _where(out, "001"), "001"),
                               [[0, 25 / W, 35 / H, 30 / W, 30 / H]], atol=1e-6)
    np.testing.assert_allclose(_labels(out, _where(out, "002"), "002"),
                               [[1, 27 / W, 25 / H, 30 / W, 30 / H], [0, 71 / W, 58 / H, 30 / W, 28 / H]], atol=1e-6)
    np.testing.assert_allclose(_labels(out, _where(out, "004"), "004")[1],
                               [0, 76 / W, 62 / H, 40 / W, 36 / H], atol=1e-6)  # (56,44)-(96,80) after clipping

    # each label's centre lands on its drawn colour in the output image
    for stem, boxes in BOXES.items():
        split = _where(out, stem)
        im = cv2.imread(str(out / "images" / split / f"{stem}.jpg"))
        for c, x, y, _, _ in _labels(out, split, stem):
            assert np.abs(im[int(y * H), int(x * W)].astype(int) - COLOURS[int(c) + 1]).max() < 40

    # the malformed line and the bad class are reported with file and line; the rest of 003 is kept
    gt3 = nwpu_src / nwpu2yolo.TRUTH / "003.txt"
    assert any(s.startswith(f"{gt3}:2: malformed line") for s in summary.skipped)
    assert any(s.startswith(f"{gt3}:3: malformed line") for s in summary.skipped)
    assert any(s.startswith(f"{gt3}:4: class id 11 outside 1..10") for s in summary.skipped)
    assert len(summary.skipped) == 3 and len(_labels(out, _where(out, "003"), "003")) == 2
    assert f"{nwpu_src / nwpu2yolo.TRUTH / '002.txt'}:2: corners in the wrong order" in "\n".join(summary.notes)
    assert f"{nwpu_src / nwpu2yolo.TRUTH / '004.txt'}:2: box clipped" in "\n".join(summary.notes)
    assert "skipped lines: 3" in printed and "class id 11" in printed and "path: " in printed
    record = yaml.safe_load((out / "split.yaml").read_text())
    assert record["seed"] == 0 and len(record["val"]) == 2 and record["negatives"] == ["001", "002"]


def test_split_is_seeded_and_reproducible(nwpu_src, tmp_path):
    ids = [f"{i:03d}" for i in range(1, 651)]
    train, val = nwpu2yolo.split_ids(ids, 0.2, seed=0)
    assert (len(train), len(val)) == (520, 130) and sorted(train + val) == ids
    assert nwpu2yolo.split_ids(list(reversed(ids)), 0.2, seed=0) == (train, val)  # order of input irrelevant
    assert nwpu2yolo.split_ids(ids, 0.2, seed=1)[1] != val

    # on the folder: the same seed twice gives the same files, another seed another val set
    def val_of(seed, name):
        nwpu2yolo.convert(nwpu_src, tmp_path / name, seed=seed)
        return sorted(p.name for p in (tmp_path / name / "images" / "val").iterdir())

    assert val_of(0, "a") == val_of(0, "b")
    assert val_of(0, "a") != val_of(3, "c")
    assert val_of(3, "a") == val_of(3, "c")  # re-converting into an existing output replaces it
    with pytest.raises(ValueError, match="separate folder"):
        nwpu2yolo.convert(nwpu_src, nwpu_src / "yolo")
    (tmp_path / "foreign" / "images").mkdir(parents=True)
    (tmp_path / "foreign" / "images" / "keep.jpg").write_bytes(b"x")
    with pytest.raises(FileExistsError, match="not an nwpu2yolo output"):
        nwpu2yolo.convert(nwpu_src, tmp_path / "foreign")


def test_nwpu_yaml_converts_through_download_and_resolves(nwpu_src, tmp_path, monkeypatch):
    monkeypatch.setenv("DATASETS_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="nwpu2yolo"):  # not converted yet, no autodownload
        config.check_dataset("NWPU-VHR-10.yaml")
    d = config.check_dataset("NWPU-VHR-10.yaml", autodownload=True)
    assert list(d["names"].values()) == list(nwpu2yolo.NAMES) and d["nc"] == 10
    assert d["path"] == str(tmp_path / "NWPU-VHR-10") and d["test"] is None
    assert d["train"] == str(tmp_path / "NWPU-VHR-10" / "images" / "train") and Path(d["val"]).is_dir()
    assert config.check_dataset("NWPU-VHR-10.yaml") == d  # converted once, found from then on


def test_nwpu_yaml_offline_says_where_to_put_the_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("DATASETS_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError) as e:
        config.check_dataset("NWPU-VHR-10.yaml", autodownload=True)
    msg = str(e.value)
    assert str(tmp_path / nwpu2yolo.SOURCE_NAME / nwpu2yolo.POSITIVE) in msg and "authors' distribution" in msg
    with pytest.raises(SystemExit):
        nwpu2yolo.cli(["--src", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")])


def test_voc_yaml_parses_and_resolves(tmp_path, monkeypatch):
    monkeypatch.setenv("DATASETS_DIR", str(tmp_path))
    obj = "<object><name>{}</name><difficult>0</difficult><bndbox><xmin>5</xmin><ymin>5</ymin>" \
          "<xmax>30</xmax><ymax>20</ymax></bndbox></object>"
    for year, splits in (("2007", ("train", "val", "test")), ("2012", ("train", "val"))):
        voc = tmp_path / "VOC" / "VOCdevkit" / f"VOC{year}"
        (voc / "ImageSets" / "Main").mkdir(parents=True)
        (voc / "Annotations").mkdir()
        for split in splits:
            stem = f"{year}_{split}"
            write_image(voc / "JPEGImages" / f"{stem}.jpg", 48, 32)
            (voc / "Annotations" / f"{stem}.xml").write_text(f"<annotation>{obj.format('cat')}</annotation>")
            (voc / "ImageSets" / "Main" / f"{split}.txt").write_text(stem + "\n")
    d = config.check_dataset("VOC.yaml")
    assert d["nc"] == 20 and d["names"][7] == "cat" and d["path"] == str(tmp_path / "VOC")
    assert len(d["train"]) == 4 and d["val"] == d["test"] and Path(d["val"]).is_file()
    label = Path(d["labels"]) / "2007_test.txt"
    np.testing.assert_allclose(np.loadtxt(label), [7, 16.5 / 48, 11.5 / 32, 25 / 48, 15 / 32], atol=1e-6)


def test_train_kd_one_epoch_on_converted_nwpu(nwpu_src, tmp_path, monkeypatch):
    import torch

    import train_kd
    from models import weights
    from models.yolo import Model
    from utils import checkpoint

    monkeypatch.setenv("DATASETS_DIR", str(tmp_path))
    nwpu2yolo.convert(nwpu_src, tmp_path / "NWPU-VHR-10", include_negatives=True)
    torch.manual_seed(0)
    teacher = tmp_path / "teacher.pt"
    checkpoint.save_checkpoint({"model": weights.model_record(Model("yolov5n.yaml", nc=10)), "epoch": -1}, teacher)
    opt = train_kd.main(train_kd.parse_opt([
        "--data", "NWPU-VHR-10.yaml", "--cfg", "yolov5n.yaml", "--weights", "", "--imgsz", "64", "--epochs", "1",
        "--batch-size", "4", "--device", "cpu", "--workers", "0", "--noautoanchor", "--noplots",
        "--hyp", str(ROOT / "data" / "hyps" / "hyp.scratch-low.yaml"), "--teacher", str(teacher), "--kd", "fgd",
        "--project", str(tmp_path / "runs"), "--name", "kd"]))
    run = Path(opt.save_dir)
    student = weights.load_model(run / "weights" / "last.pt")
    assert student.nc == 10 and list(student.names.values()) == list(nwpu2yolo.NAMES)
    header = (run / "results.csv").read_text().splitlines()[0]
    assert "distill_fgd_fg" in header
