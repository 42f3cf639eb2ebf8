"""Each kind of damaged input is skipped (or repaired in memory) with a warning naming the file and problem."""
from __future__ import annotations

import logging
import os

import cv2
import numpy as np
import pytest

from data.dataset import LoadImagesAndLabels
from data.verify import verify_pair
from tests.data.synth import make_yolo_dataset, write_image

GOOD_ROW = b"0 0.5 0.5 0.2 0.2\n"


def _pair(tmp_path, label_bytes: bytes | None, name="a", image=True):
    im = write_image(tmp_path / "images" / f"{name}.jpg", 32, 24) if image else tmp_path / "images" / f"{name}.jpg"
    lb = tmp_path / "labels" / f"{name}.txt"
    if label_bytes is not None:
        lb.parent.mkdir(parents=True, exist_ok=True)
        lb.write_bytes(label_bytes)
    return str(im), str(lb)


@pytest.mark.parametrize(
    "content, problem",
    [
        (b"0 0.5 0.5 0.2\n", "4 columns"),
        (b"0 0.5 0.5 0.2 0.2 0.3\n", "6 columns"),
        (b"0 nan 0.5 0.2 0.2\n", "non-finite"),
        (b"0 0.5 0.5 inf 0.2\n", "non-finite"),
        (b"0 -0.1 0.5 0.2 0.2\n", "negative"),
        (b"0 0.5 1.2 0.2 0.2\n", "non-normalised"),
        (b"3 0.5 0.5 0.2 0.2\n", "exceeds dataset class count nc=3"),
        (b"-1 0.5 0.5 0.2 0.2\n", "non-negative integers"),
        (b"1.5 0.5 0.5 0.2 0.2\n", "non-negative integers"),
        (b"0 0.5 abc 0.2 0.2\n", "non-numeric"),
        ("0 0.5 0.5 0.2 0.2 # caf\u00e9\n".encode("latin-1"), "not UTF-8"),
        (b"0 0.1 0.1 0.1 0.1 0.1\n", "6 columns"),
        (b"0 0.1 0.1 0.2 0.2 0.3 0.1 0.4\n", "8 columns"),  # polygon with an odd coordinate count
    ],
)
def test_bad_label_rows_make_the_pair_corrupt(tmp_path, content, problem):
    im, lb = _pair(tmp_path, content)
    r = verify_pair(im, lb, nc=3)
    assert r.status == "corrupt"
    assert lb in r.msg and problem in r.msg


def test_crlf_blank_lines_and_duplicate_rows(tmp_path):
    im, lb = _pair(tmp_path, b"0 0.5 0.5 0.2 0.2\r\n\r\n1 0.3 0.3 0.1 0.1\r\n0 0.5 0.5 0.2 0.2\r\n")
    r = verify_pair(im, lb, nc=3)
    assert r.status == "found"
    np.testing.assert_allclose(r.labels, [[0, 0.5, 0.5, 0.2, 0.2], [1, 0.3, 0.3, 0.1, 0.1]], atol=1e-6)
    assert "1 duplicate labels removed" in r.msg and lb in r.msg


def test_near_duplicates_are_kept(tmp_path):
    im, lb = _pair(tmp_path, b"0 0.5 0.5 0.2 0.2\n0 0.503 0.5 0.2 0.2\n")
    assert len(verify_pair(im, lb, nc=1).labels) == 2


def test_polygon_row_gives_min_max_box_and_segment(tmp_path):
    im, lb = _pair(tmp_path, b"2 0.1 0.2 0.5 0.2 0.5 0.6 0.1 0.6\n")
    r = verify_pair(im, lb, nc=3)
    assert r.status == "found"
    np.testing.assert_allclose(r.labels, [[2, 0.3, 0.4, 0.4, 0.4]], atol=1e-6)
    assert len(r.segments) == 1 and r.segments[0].shape == (4, 2)


def test_empty_and_missing_labels_are_backgrounds(tmp_path):
    im, lb = _pair(tmp_path, b"\n \n", name="e")
    assert verify_pair(im, lb).status == "empty"
    im, lb = _pair(tmp_path, None, name="m")
    r = verify_pair(im, lb)
    assert r.status == "missing" and r.shape == (32, 24)


def _truncated_jpeg(path):
    im = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    ok, buf = cv2.imencode(".jpg", im)
    path.write_bytes(buf.tobytes()[: len(buf) // 2])


@pytest.mark.parametrize(
    "make, problem",
    [
        (lambda p: p.write_bytes(b""), "zero-byte"),
        (lambda p: p.write_text("this is not an image\n"), "cannot identify image"),
        (_truncated_jpeg, "truncated"),
        (lambda p: write_image(p, 5, 5), "5x5 is <10 pixels"),
        (lambda p: write_image(p, 100, 9), "100x9 is <10 pixels"),
    ],
)
def test_bad_images_are_corrupt(tmp_path, make, problem):
    im = tmp_path / "images" / "bad.jpg"
    im.parent.mkdir(parents=True)
    make(im)
    _, lb = _pair(tmp_path, GOOD_ROW, name="bad", image=False)
    before = im.read_bytes()
    r = verify_pair(str(im), lb, nc=1)
    assert r.status == "corrupt" and str(im) in r.msg and problem in r.msg
    assert im.read_bytes() == before  # never re-saved


def test_dataset_skips_damaged_pairs_and_counts_them(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="yolov5.data")
    src = make_yolo_dataset(tmp_path / "ds", n=4)
    lbl = tmp_path / "ds" / "labels" / "train"
    (src / "zero.jpg").write_bytes(b"")
    (lbl / "zero.txt").write_bytes(GOOD_ROW)
    (src / "text.jpg").write_text("hello")
    write_image(src / "bg.png", 40, 30)  # no label: background
    write_image(src / "badlabel.png", 40, 30)
    (lbl / "badlabel.txt").write_text("9 0.5 0.5 0.1 0.1\n")
    (lbl / "orphan.txt").write_bytes(GOOD_ROW)  # a label without image is ignored
    ds = LoadImagesAndLabels(str(src), img_size=64, nc=8, prefix="train: ")
    assert sorted(os.path.basename(f) for f in ds.im_files) == ["bg.png"] + [f"im{i}.png" for i in range(4)]
    assert ds.counts == {"found": 4, "missing": 1, "empty": 0, "corrupt": 3}
    err = caplog.text
    assert "4 images, 1 backgrounds, 3 corrupt" in err
    assert "badlabel.txt: ignoring corrupt label: class id 9 exceeds" in err


def test_zero_usable_images_is_a_clear_error(tmp_path):
    src = tmp_path / "images"
    src.mkdir()
    (src / "a.jpg").write_bytes(b"")
    with pytest.raises(RuntimeError, match="no usable images"):
        LoadImagesAndLabels(str(src), img_size=64)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no images found"):
        LoadImagesAndLabels(str(tmp_path / "empty"), img_size=64)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        LoadImagesAndLabels(str(tmp_path / "nope"), img_size=64)


def test_training_without_any_label_names_the_expected_path(tmp_path):
    write_image(tmp_path / "data" / "images" / "a.png", 40, 30)
    with pytest.raises(RuntimeError, match=r"no labels found.*data/labels/a\.txt"):
        LoadImagesAndLabels(str(tmp_path / "data" / "images"), img_size=64, augment=True)
    ds = LoadImagesAndLabels(str(tmp_path / "data" / "images"), img_size=64)  # fine for validation
    assert len(ds) == 1 and ds.labels[0].shape == (0, 5)
