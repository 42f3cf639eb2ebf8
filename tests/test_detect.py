"""detect.py against upstream's detections on coco8 (../shared/reference/yolov5n-coco8.json)."""
import json
import shutil

import cv2
import numpy as np
import pytest
import torch

import detect
from utils import boxes


def match_reference(results, reference):
    """(matched, total, extras): each reference detection needs one of ours with the same class, IoU >= 0.9 and
    |dconf| <= 0.02; an extra is one of ours with conf >= 0.3 that matched nothing."""
    matched = total = 0
    extras = []
    for path, det in results.items():
        name = path.split("/")[-1]
        h, w = cv2.imread(path).shape[:2]
        ours = boxes.xyxy2xywhn(det[:, :4], w=w, h=h)
        used = set()
        for ref in reference.get(name, []):
            total += 1
            iou = boxes.box_iou(boxes.xywh2xyxy(torch.tensor([ref["xywhn"]])), boxes.xywh2xyxy(ours))[0]
            for k in range(len(det)):
                if (k not in used and int(det[k, 5]) == ref["cls"] and iou[k] >= 0.9
                        and abs(float(det[k, 4]) - ref["conf"]) <= 0.02):
                    used.add(k)
                    matched += 1
                    break
        extras += [(name, det[k].tolist()) for k in range(len(det)) if k not in used and det[k, 4] >= 0.3]
    return matched, total, extras


def test_detections_match_upstream_reference(yolov5n_pt, coco8_dir, reference_json, tmp_path):
    reference = json.loads(reference_json.read_text())["detect"]["per_image"]
    save_dir, results, _ = detect.run(weights=str(yolov5n_pt), source=str(coco8_dir / "images" / "*" / "*.jpg"),
                                   imgsz=(640, 640), conf_thres=0.25, iou_thres=0.45, device="cpu",
                                   project=tmp_path, name="exp", save_txt=True, save_conf=True)
    assert len(results) == 8
    matched, total, extras = match_reference(results, reference)
    assert total == sum(len(v) for v in reference.values()) == 19
    assert matched == total and not extras, (matched, total, extras)
    # annotated images and appended label files land in runs/detect/exp layout
    assert len(list(save_dir.glob("*.jpg"))) == 8
    label = (save_dir / "labels" / "000000000025.txt").read_text().split()
    assert label[0] == "23" and len(label) == 6


def test_folder_with_broken_image_is_reported_and_skipped(yolov5n_pt, coco8_dir, tmp_path, caplog):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(coco8_dir / "images" / "val" / "000000000036.jpg", src / "good.jpg")
    (src / "broken.jpg").write_bytes(b"not an image at all")
    cv2.imwrite(str(src / "small.png"), np.full((40, 60, 3), 255, np.uint8))
    save_dir, results, _ = detect.run(weights=str(yolov5n_pt), source=str(src), imgsz=(320, 320), device="cpu",
                                   project=tmp_path / "runs", save_crop=True)
    assert sorted(p.split("/")[-1] for p in results) == ["good.jpg", "small.png"]
    assert "broken.jpg: cannot read or decode the image" in caplog.text
    assert (save_dir / "good.jpg").exists()
    assert list((save_dir / "crops").rglob("*.jpg"))


def test_run_dirs_increment(tmp_path, yolov5n_pt, coco8_dir):
    src = coco8_dir / "images" / "val" / "000000000042.jpg"
    first, *_ = detect.run(weights=str(yolov5n_pt), source=str(src), imgsz=(128, 128), project=tmp_path, nosave=True)
    second, *_ = detect.run(weights=str(yolov5n_pt), source=str(src), imgsz=(128, 128), project=tmp_path, nosave=True)
    assert (first.name, second.name) == ("exp", "exp2")


def test_missing_source_is_a_clear_error(tmp_path, yolov5n_pt):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        detect.run(weights=str(yolov5n_pt), source=str(tmp_path / "nope"), project=tmp_path)


def test_video_frames_with_stride_and_unopenable_video(yolov5n_pt, coco8_dir, tmp_path, caplog):
    src = tmp_path / "videos"
    src.mkdir()
    frame = cv2.resize(cv2.imread(str(coco8_dir / "images" / "val" / "000000000036.jpg")), (160, 128))
    writer = cv2.VideoWriter(str(src / "clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 5, (160, 128))
    for _ in range(4):
        writer.write(frame)
    writer.release()
    (src / "broken.mp4").write_bytes(b"\x00" * 64)
    save_dir, results, _ = detect.run(weights=str(yolov5n_pt), source=str(src), imgsz=(160, 160), device="cpu",
                                      project=tmp_path / "runs", vid_stride=2, save_txt=True)
    assert sorted(results) == [f"{src / 'clip.mp4'}:2", f"{src / 'clip.mp4'}:4"]  # every 2nd of 4 frames
    assert "broken.mp4: cannot open the video" in caplog.text
    assert (save_dir / "clip.mp4").stat().st_size > 0
