"""VOC XML -> YOLO: BCCD conversion (counts, quirks, read-only source) and the exact rules on synthetic XML."""
from __future__ import annotations

import hashlib
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from data import config, voc
from tests.data.synth import write_image

BCCD_NAMES = ["RBC", "WBC", "Platelets"]


def _tree_digest(folder: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(folder.rglob("*")):
        if f.is_file():
            h.update(f.relative_to(folder).as_posix().encode() + f.read_bytes())
    return h.hexdigest()


def _xml_counts(root: Path, ids) -> np.ndarray:
    """Per-class object counts straight from the XML, excluding difficult and zero-size boxes."""
    counts = np.zeros(3, int)
    for i in ids:
        for obj in ET.parse(root / "Annotations" / f"{i}.xml").getroot().iter("object"):
            b = [float(obj.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax")]
            if obj.findtext("difficult", "0").strip() != "1" and b[2] > b[0] and b[3] > b[1]:
                counts[BCCD_NAMES.index(obj.findtext("name").strip())] += 1
    return counts


def _label_counts(labels_dir: Path, ids) -> np.ndarray:
    counts = np.zeros(3, int)
    for i in ids:
        rows = np.loadtxt(labels_dir / f"{i}.txt", ndmin=2)
        np.add.at(counts, rows[:, 0].astype(int), 1)
        assert (rows[:, 1:] >= 0).all() and (rows[:, 1:] <= 1).all() and (rows[:, 3:] > 0).all()
    return counts


def test_bccd_conversion(bccd_dir, monkeypatch, caplog):
    before = _tree_digest(bccd_dir)
    monkeypatch.setenv("DATASETS_DIR", str(bccd_dir.parent))
    d = config.check_dataset("BCCD.yaml")
    labels = Path(d["labels"])
    assert not labels.is_relative_to(bccd_dir) and labels.is_dir()
    for split in ("train", "val"):
        ids = (bccd_dir / "ImageSets" / "Main" / f"{split}.txt").read_text().split()
        images = Path(d[split]).read_text().split()
        assert [Path(p).stem for p in images] == ids and all(Path(p).is_file() for p in images)
        np.testing.assert_array_equal(_label_counts(labels, ids), _xml_counts(bccd_dir, ids))
    assert "BloodImage_00343.xml: object 3 (RBC) has zero width or height, dropped" in caplog.text
    assert "BloodImage_00338.xml" in caplog.text
    rows = np.loadtxt(labels / "BloodImage_00020.txt", ndmin=2)  # near-duplicates (2 px apart) are kept
    xy = rows[rows[:, 0] == 0][:, 1:3] * [640, 480]
    dist = np.linalg.norm(xy[:, None] - xy[None], axis=2) + np.eye(len(xy)) * 1e9
    assert (dist < 3).any()
    assert _tree_digest(bccd_dir) == before  # the source is untouched
    d2 = config.check_dataset("BCCD.yaml")  # second use reuses the conversion
    assert d2["train"] == d["train"] and "Converting" not in caplog.text.split("BloodImage_00338")[-1]


def _voc_root(tmp_path) -> Path:
    root = tmp_path / "VOCx"
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "Annotations").mkdir()
    write_image(root / "JPEGImages" / "a.jpg", 200, 100)
    write_image(root / "JPEGImages" / "b.JPG", 50, 40)
    (root / "ImageSets" / "Main" / "train.txt").write_text("a\nb\n")
    obj = "<object><name>{}</name><difficult>{}</difficult><bndbox><xmin>{}</xmin><ymin>{}</ymin>" \
          "<xmax>{}</xmax><ymax>{}</ymax></bndbox></object>"
    (root / "Annotations" / "a.xml").write_text(
        "<annotation><filename>a.jpg</filename><path>C:\\Users\\someone\\a.jpg</path>"
        "<size><width>200</width><height>100</height></size>"
        + obj.format("cat", 0, 1, 1, 101, 51) + obj.format("dog", 1, 10, 10, 20, 20)
        + obj.format("dog", 0, 150, 60, 201, 101) + obj.format("cat", 0, 30, 30, 30, 40)
        + obj.format("bird", 0, 5, 5, 9, 9) + "</annotation>")
    (root / "Annotations" / "b.xml").write_text(  # no <size>, foreign <filename>: found by id
        "<annotation><filename>other.png</filename>" + obj.format("dog", 0, 11, 11, 21, 31) + "</annotation>")
    return root


def test_voc_rules(tmp_path, caplog):
    root = _voc_root(tmp_path)
    before = _tree_digest(root)
    out = tmp_path / "out"
    lst = voc.convert_split(root / "ImageSets" / "Main" / "train.txt", ["cat", "dog"], out)
    assert lst.read_text().split() == [str(root / "JPEGImages" / "a.jpg"), str(root / "JPEGImages" / "b.JPG")]
    a = np.loadtxt(out / "labels" / "a.txt", ndmin=2)
    # cat (1,1)-(101,51): -1 offset -> (0,0)-(100,50); dog (150,60)-(201,101) clipped to (149,59)-(200,100)
    np.testing.assert_allclose(a, [[0, 0.25, 0.25, 0.5, 0.5], [1, 174.5 / 200, 79.5 / 100, 51 / 200, 41 / 100]],
                               atol=1e-6)
    b = np.loadtxt(out / "labels" / "b.txt", ndmin=2)
    np.testing.assert_allclose(b, [[1, 15 / 50, 20 / 40, 10 / 50, 20 / 40]], atol=1e-6)
    assert "a.xml: object 3 (cat) has zero width or height, dropped" in caplog.text
    assert "class 'bird' not in names" in caplog.text
    assert _tree_digest(root) == before


def test_voc_reconverts_when_an_xml_changes(tmp_path):
    root = _voc_root(tmp_path)
    split, out = root / "ImageSets" / "Main" / "train.txt", tmp_path / "out"
    voc.convert_split(split, ["cat", "dog"], out)
    xml = root / "Annotations" / "b.xml"
    xml.write_text(xml.read_text().replace("<name>dog</name>", "<name>cat</name>"))
    voc.convert_split(split, ["cat", "dog"], out)
    assert np.loadtxt(out / "labels" / "b.txt", ndmin=2)[0, 0] == 0


def test_voc_yaml_through_check_dataset(tmp_path):
    root = _voc_root(tmp_path)
    d = config.check_dataset({"path": str(root), "train": "ImageSets/Main/train.txt",
                              "val": "ImageSets/Main/train.txt", "test": "ImageSets/Main/test.txt",
                              "names": ["cat", "dog"]})
    assert d["test"] is None and Path(d["labels"]).is_relative_to(config.voc_cache_dir(root))
    from data.dataset import LoadImagesAndLabels

    ds = LoadImagesAndLabels(d["train"], img_size=64, labels_dir=d["labels"], nc=2)
    assert [len(lb) for lb in ds.labels] == [2, 1]


def test_voc2yolo_cli(tmp_path, capsys):
    from data.scripts import voc2yolo

    root = _voc_root(tmp_path)
    d = voc2yolo.main(["--voc", str(root), "--splits", "train", "--names", "cat", "dog", "--out", str(tmp_path / "o")])
    assert Path(d["train"]).is_file() and (tmp_path / "o" / "labels" / "a.txt").is_file()
    assert "labels:" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        voc2yolo.main(["--voc", str(root), "--names", "cat", "--out", str(root / "labels")])
