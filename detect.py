"""Run a YOLOv5 model on images, folders, globs, txt lists of paths or videos.

Usage:
    python detect.py --weights yolov5s.pt --source data/images --imgsz 640
    python detect.py --weights runs/train/exp/weights/best.pt --source img.jpg --save-txt --save-conf
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
import torch

from data import config as data_config
from models import ensemble
from utils import amp, boxes, cli, nms, plots, sizes
from utils.device import select_device
from utils.paths import increment_path
from utils.sources import LoadImages

LOGGER = logging.getLogger("detect")
ROOT = Path(__file__).resolve().parent


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser("YOLOv5 detection", add_help=add_help)
    p.add_argument("--weights", nargs="+", type=str, default=["yolov5s.pt"], help="model path(s)")
    p.add_argument("--source", type=str, default=str(ROOT / "data/images"), help="file/dir/glob/txt list/video")
    p.add_argument("--data", type=str, default=None,
                   help="dataset yaml whose class names label the boxes (its nc must be the model's)")
    p.add_argument("--imgsz", "--img", "--img-size", nargs="+", type=int, default=[640], help="inference h,w")
    p.add_argument("--conf-thres", type=float, default=0.25, help="confidence threshold")
    p.add_argument("--iou-thres", type=float, default=0.45, help="NMS IoU threshold")
    p.add_argument("--max-det", type=int, default=1000, help="maximum detections per image")
    p.add_argument("--device", default="", help="cuda device, i.e. 0 or cpu")
    p.add_argument("--view-img", action="store_true", help="show results in a window (needs a display)")
    p.add_argument("--save-txt", action="store_true", help="save results to *.txt")
    p.add_argument("--save-conf", action="store_true", help="save confidences in --save-txt labels")
    p.add_argument("--save-crop", action="store_true", help="save cropped prediction boxes")
    p.add_argument("--nosave", action="store_true", help="do not save images/videos")
    p.add_argument("--classes", nargs="+", type=int, help="filter by class: --classes 0, or --classes 0 2 3")
    p.add_argument("--agnostic-nms", action="store_true", help="class-agnostic NMS")
    p.add_argument("--augment", action="store_true", help="augmented inference (TTA)")
    p.add_argument("--project", default=str(ROOT / "runs/detect"), help="save results to project/name")
    p.add_argument("--name", default="exp", help="save results to project/name")
    p.add_argument("--exist-ok", action="store_true", help="existing project/name ok, do not increment")
    p.add_argument("--line-thickness", default=3, type=int, help="bounding box thickness (pixels)")
    p.add_argument("--hide-labels", default=False, action="store_true", help="hide labels")
    p.add_argument("--hide-conf", default=False, action="store_true", help="hide confidences")
    p.add_argument("--half", action="store_true",
                   help="half precision: FP16 on CUDA, bf16 autocast on a CPU with native bf16 (else FP32)")
    p.add_argument("--vid-stride", type=int, default=1, help="video frame-rate stride")
    cli.add_refused(p, "detect")  # upstream's --dnn, --visualize, --update: a clear error, not 'unrecognized'
    return p


def check_options(view_img: bool, save_txt: bool, save_conf: bool, nosave: bool, line_thickness: int,
                  hide_labels: bool, hide_conf: bool) -> None:
    """Flags that would do nothing in this combination stop here, naming the flag."""
    if save_conf and not save_txt:
        raise ValueError("--save-conf adds confidences to the --save-txt labels: add --save-txt")
    drawing = [flag for flag, given in (("--line-thickness", line_thickness != 3), ("--hide-labels", hide_labels),
                                        ("--hide-conf", hide_conf)) if given]
    if nosave and not view_img and drawing:
        raise ValueError(f"{', '.join(drawing)} only change(s) the drawn boxes, and --nosave draws nothing "
                         "(add --view-img, or drop --nosave)")
    if view_img:
        check_display()


def check_display() -> None:
    """--view-img needs an OpenCV with a GUI backend and a display; else a ValueError naming the flag."""
    gui = [line.split(":", 1)[1].strip() for line in cv2.getBuildInformation().splitlines()
           if line.strip().startswith("GUI:")]
    if gui and gui[0].upper() == "NONE":
        raise ValueError("--view-img: this OpenCV build has no GUI backend (opencv-python-headless?): install "
                         "opencv-python, or drop --view-img and look at the saved images")
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise ValueError("--view-img: no display (DISPLAY is not set); drop --view-img and look at the saved images")
    try:
        cv2.imshow("detect.py", np.zeros((8, 8, 3), np.uint8))
        cv2.waitKey(1)
        cv2.destroyWindow("detect.py")
    except cv2.error as e:
        raise ValueError(f"--view-img: cannot open a window ({str(e).strip().splitlines()[-1]})") from None


def show(title: str, im0) -> None:
    cv2.imshow(title, im0)
    cv2.waitKey(1)  # 1 ms: the window refreshes and the run goes on


def class_names(data, model_names: dict, weights) -> dict:
    """--data: the dataset yaml's class names instead of the checkpoint's; the class counts must agree."""
    yaml_file, names = data_config.load_names(data)
    if len(names) != len(model_names):
        raise ValueError(f"--data {yaml_file or data} has {len(names)} classes but {weights} predicts "
                         f"{len(model_names)}: give the dataset the model was trained on")
    if names != dict(model_names):
        LOGGER.info(f"class names from {yaml_file} (the checkpoint's differ)")
    return names


def parse_opt(argv=None) -> argparse.Namespace:
    opt = get_args_parser().parse_args(argv)
    opt.imgsz *= 2 if len(opt.imgsz) == 1 else 1
    return opt


def forward(model, im, augment: bool, precision: amp.Precision | None = None):
    """Eval-mode predictions (B, N, no) of a model or ensemble.Ensemble; under a bf16 ``precision`` the model runs
    in autocast and the predictions come back FP32 for NMS."""
    if precision is not None and precision.dtype == torch.bfloat16:
        with precision.autocast():
            return model(im, augment=augment)[0].float()
    return model(im, augment=augment)[0]


def save_crop(im0, xyxy, path: Path, gain: float = 1.02, pad: int = 10):
    """Save the box region (expanded to wh * gain + pad, clipped) as a JPEG; never overwrite: stem2, stem3, ..."""
    b = boxes.xyxy2xywh(torch.tensor(xyxy, dtype=torch.float32).view(-1, 4))
    b[:, 2:] = b[:, 2:] * gain + pad
    x1, y1, x2, y2 = boxes.clip_boxes(boxes.xywh2xyxy(b), im0.shape[:2])[0].long().tolist()
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(increment_path(path.with_suffix(".jpg"))), im0[y1:y2, x1:x2], [cv2.IMWRITE_JPEG_QUALITY, 95])


def describe(det, names) -> str:
    """'4 persons, 1 bus, ' (naive plural, as upstream)."""
    counts = Counter(int(c) for c in det[:, 5].tolist())
    return "".join(f"{n} {names[c]}{'s' * (n > 1)}, " for c, n in sorted(counts.items()))


def write_labels(det, im0_shape, txt_path: Path, save_conf: bool):
    gn = torch.tensor(im0_shape)[[1, 0, 1, 0]]
    with open(txt_path, "a") as f:  # appended, as upstream (video frames share a file per frame index)
        for *xyxy, conf, cls in det.tolist():
            xywh = (boxes.xyxy2xywh(torch.tensor(xyxy).view(1, 4)) / gn).view(-1).tolist()
            line = (cls, *xywh, conf) if save_conf else (cls, *xywh)
            f.write(("%g " * len(line)).rstrip() % line + "\n")


def annotate(im0, det, names, line_width: int, hide_labels: bool, hide_conf: bool):
    for *xyxy, conf, cls in det.tolist():
        c = int(cls)
        label = None if hide_labels else (names[c] if hide_conf else f"{names[c]} {conf:.2f}")
        plots.draw_box(im0, xyxy, label, plots.colors(c, bgr=True), line_width)
    return im0


class DetectResult(NamedTuple):
    save_dir: Path
    detections: dict
    speed: tuple


class VideoSink:
    """One mp4v writer per video source, re-opened when the source changes."""

    def __init__(self):
        self.path, self.writer = None, None

    def write(self, save_path: Path, im0, cap):
        if self.path != save_path:
            self.close()
            fps = cap.get(cv2.CAP_PROP_FPS) or 30
            h, w = im0.shape[:2]
            self.path = save_path
            self.writer = cv2.VideoWriter(str(save_path.with_suffix(".mp4")), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
        self.writer.write(im0)

    def close(self):
        if self.writer is not None:
            self.writer.release()
        self.path, self.writer = None, None


@torch.no_grad()
def run(
    weights="yolov5s.pt", source=ROOT / "data/images", data=None, imgsz=(640, 640), conf_thres=0.25,
    iou_thres=0.45, max_det=1000, device="", view_img=False, save_txt=False, save_conf=False, save_crop=False,
    nosave=False, classes=None, agnostic_nms=False, augment=False, project=ROOT / "runs/detect", name="exp",
    exist_ok=False, line_thickness=3, hide_labels=False, hide_conf=False, half=False, vid_stride=1,
):
    """Detect objects and save annotated images/videos, labels and crops under project/name.

    Returns DetectResult(save_dir, detections {source path: (k, 6) tensor [x1, y1, x2, y2, conf, cls] in
    original-image pixels}, speed (pre-process, inference, NMS) in ms per image).
    """
    check_options(view_img, save_txt, save_conf, nosave, line_thickness, hide_labels, hide_conf)
    save_dir = increment_path(Path(project) / name, exist_ok=exist_ok)
    (save_dir / "labels" if save_txt else save_dir).mkdir(parents=True, exist_ok=True)
    device = select_device(device)
    precision = amp.inference_precision(device, half)  # FP16 weights on CUDA, bf16 autocast on a bf16 CPU
    half = precision.dtype == torch.float16
    model = ensemble.load(weights, device)
    model.half() if half else model.float()
    stride, names = int(model.stride.max()), model.names
    names = class_names(data, names, weights) if data else names
    imgsz = [imgsz] if isinstance(imgsz, int) else list(imgsz)
    imgsz = imgsz * 2 if len(imgsz) == 1 else imgsz  # (h, w)
    imgsz = sizes.check_img_size(imgsz, stride, floor=stride)
    dataset = LoadImages(source, img_size=imgsz, stride=stride, auto=True, vid_stride=vid_stride)
    sink, results, seen, dt = VideoSink(), {}, 0, [0.0, 0.0, 0.0]
    save_opts = dict(save_txt=save_txt, save_conf=save_conf, save_crop=save_crop, nosave=nosave, view_img=view_img,
                     line_thickness=line_thickness, hide_labels=hide_labels, hide_conf=hide_conf)
    for path, im, im0, cap, prefix in dataset:
        t0 = time.perf_counter()
        x = torch.from_numpy(im).to(device)
        x = (x.half() if half else x.float())[None] / 255
        t1 = time.perf_counter()
        pred = forward(model, x, augment, precision)
        t2 = time.perf_counter()
        det = nms.non_max_suppression(pred, conf_thres, iou_thres, classes, agnostic_nms, max_det=max_det)[0]
        t3 = time.perf_counter()
        det[:, :4] = boxes.scale_boxes(x.shape[2:], det[:, :4], im0.shape).round()
        dt = [dt[0] + t1 - t0, dt[1] + t2 - t1, dt[2] + t3 - t2]
        seen += 1
        frame = int(cap.get(cv2.CAP_PROP_POS_FRAMES)) if cap is not None else None
        p = Path(path)
        stem = p.stem if frame is None else f"{p.stem}_{frame}"
        results[path if frame is None else f"{path}:{frame}"] = det.cpu()
        _save_outputs(det, im0, p, stem, cap, save_dir, sink, names, save_opts)
        LOGGER.info(f"{prefix}{x.shape[2]}x{x.shape[3]} {describe(det, names) or '(no detections), '}{(t2 - t1) * 1e3:.1f}ms")
    sink.close()
    speed = tuple(x / max(seen, 1) * 1e3 for x in dt)
    _log_summary(speed, imgsz, save_dir, save_txt)
    return DetectResult(save_dir, results, speed)


def _save_outputs(det, im0, p: Path, stem: str, cap, save_dir: Path, sink: VideoSink, names, o: dict):
    if o["save_txt"]:
        write_labels(det, im0.shape, save_dir / "labels" / f"{stem}.txt", o["save_conf"])
    if o["save_crop"]:
        for *xyxy, _, cls in det.tolist():
            save_crop(im0, xyxy, save_dir / "crops" / names[int(cls)] / f"{p.stem}.jpg")
    if o["nosave"] and not o["view_img"]:
        return
    im0 = annotate(im0.copy(), det, names, o["line_thickness"], o["hide_labels"], o["hide_conf"])
    if o["view_img"]:
        show(str(p), im0)
    if o["nosave"]:
        return
    if cap is None:
        cv2.imwrite(str(save_dir / p.name), im0)
    else:
        sink.write(save_dir / p.stem, im0, cap)


def _log_summary(speed, imgsz, save_dir: Path, save_txt: bool):
    LOGGER.info(f"Speed: %.1fms pre-process, %.1fms inference, %.1fms NMS per image at shape {(1, 3, *imgsz)}" % speed)
    n_labels = len(list(save_dir.glob("labels/*.txt")))
    extra = f"\n{n_labels} labels saved to {save_dir / 'labels'}" if save_txt else ""
    LOGGER.info(f"Results saved to {save_dir}{extra}")


def main(opt: argparse.Namespace):
    return run(**cli.checked_kwargs(opt, "detect"))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cli.main_or_exit(main, parse_opt())
