"""kd_masks.jpg from the step's first KD batch and from the standalone CLI on real checkpoints."""
from __future__ import annotations

import cv2
import torch

from distill import visualize
from tests.distill.toy import ToyDetector, toy_targets


def test_plot_kd_masks_writes_an_image(tmp_path):
    student, teacher = ToyDetector(width=4), ToyDetector(width=8)
    feats = [[torch.randn(3, c, s, s) for c, s in ((w, 16), (2 * w, 8))] for w in (4, 8)]
    out = visualize.plot_kd_masks(torch.rand(3, 3, 64, 64), toy_targets(), feats[0], feats[1],
                                  list(teacher.detect.anchors), tmp_path / "kd_masks.jpg")
    image = cv2.imread(str(out))
    assert image is not None and image.shape[1] > image.shape[0]  # 7 panels wide, 3 rows
    assert student.detect.anchors.shape == (2, 2, 2)


def test_cli_on_real_teacher_and_student(tmp_path, bccd_dir, bccd_teacher_pt, yolov5n_pt):
    source = sorted((bccd_dir / "JPEGImages").glob("*.jpg"))[0]
    args = visualize.get_args_parser().parse_args(
        ["--teacher", str(bccd_teacher_pt), "--student", str(yolov5n_pt), "--source", str(source),
         "--imgsz", "320", "--out", str(tmp_path / "kd_masks.jpg")])
    out = visualize.main(args)
    assert cv2.imread(str(out)) is not None
