"""Validate a YOLOv5 model on a detection dataset: P, R, mAP@0.5 and mAP@0.5:0.95 with YOLOv5 v7.0 numerics.

Usage:
    python val.py --weights yolov5n.pt --data coco128.yaml --imgsz 640
    python val.py --weights best.pt --data bccd.yaml --save-json   # adds pycocotools' AP/AR table

``run(model=...)`` is the entry point train.py uses each epoch with its in-memory (EMA) model.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from data.config import check_dataset
from data.loader import create_dataloader
from models import ensemble
from utils import amp, boxes, cli, coco, metrics, nms, sizes
from utils.device import select_device
from utils.paths import increment_path

LOGGER = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parent
HEADER = ("%22s" + "%11s" * 6) % ("Class", "Images", "Instances", "P", "R", "mAP50", "mAP50-95")
ROW = "%22s" + "%11i" * 2 + "%11.3g" * 4
LOSS_KEYS = ("task/box", "task/obj", "task/cls")


def output_to_target(output, max_det: int = 300) -> torch.Tensor:
    """NMS output list -> (n, 7) [img_idx, cls, cx, cy, w, h, conf] pixel rows for plot_images."""
    rows = []
    for i, o in enumerate(output):
        o = o[:max_det].cpu()
        idx = torch.full((o.shape[0], 1), i, dtype=o.dtype)
        rows.append(torch.cat((idx, o[:, 5:6], boxes.xyxy2xywh(o[:, :4]), o[:, 4:5]), 1))
    return torch.cat(rows, 0) if rows else torch.zeros((0, 7))


def save_one_txt(predn: torch.Tensor, save_conf: bool, shape, file: Path):
    """Append 'cls cx cy w h [conf]' lines, normalised by the original (h, w) ``shape``, %g formatted."""
    gn = torch.tensor(shape, dtype=torch.float32)[[1, 0, 1, 0]]
    with open(file, "a") as f:
        for *xyxy, conf, cls in predn.tolist():
            xywh = (boxes.xyxy2xywh(torch.tensor(xyxy).view(1, 4)) / gn).view(-1).tolist()
            line = (cls, *xywh, conf) if save_conf else (cls, *xywh)
            f.write(("%g " * len(line)).rstrip() % line + "\n")


class _Accumulator:
    """Per-image statistics, confusion matrix, COCO results and losses collected over the loop."""

    def __init__(self, nc: int, device, plots: bool):
        self.stats, self.jdict, self.seen = [], [], 0
        self.cm = metrics.ConfusionMatrix(nc=nc) if plots else None
        self.loss = {k: torch.zeros((), device=device) for k in LOSS_KEYS}
        self.iouv = metrics.IOU_THRESHOLDS.to(device)

    def add_image(self, pred, labels, im_shape, shape0, ratio_pad):
        """pred: (n, 6) NMS output in input pixels; labels: (m, 5) [cls, cx, cy, w, h] in input pixels.
        Returns the predictions in original-image pixels."""
        self.seen += 1
        npr = pred.shape[0]
        correct = torch.zeros(npr, self.iouv.numel(), dtype=torch.bool, device=pred.device)
        predn = pred.clone()
        predn[:, :4] = boxes.scale_boxes(im_shape, pred[:, :4], shape0, ratio_pad)
        labelsn = None
        if labels.shape[0]:
            tbox = boxes.scale_boxes(im_shape, boxes.xywh2xyxy(labels[:, 1:5]), shape0, ratio_pad)
            labelsn = torch.cat((labels[:, 0:1], tbox), 1)
            correct = metrics.match_predictions(predn, labelsn, self.iouv)
        if self.cm is not None and npr == 0:
            self.cm.process_batch(None, labels[:, 0])
        elif self.cm is not None:
            self.cm.process_batch(predn, labelsn if labelsn is not None else labels.new_zeros((0, 5)))
        if npr or labels.shape[0]:
            self.stats.append((correct, pred[:, 4], pred[:, 5], labels[:, 0]))
        return predn


def _model_setup(model, weights, device, half, imgsz, batch_size, project, name, exist_ok, save_txt):
    """Standalone runs load weights and make a run dir; training runs reuse the given model as is.

    ``half``: FP16 weights on CUDA (as upstream); bf16 autocast on a CPU with native bf16 (weights stay FP32);
    else FP32. Returns the model, device, precision (utils.amp.Precision), image size and run dir."""
    if model is not None:
        device = next(model.parameters()).device
        precision = amp.inference_precision(device, half)
        return (model.half() if precision.dtype == torch.float16 else model.float()), device, precision, imgsz, None
    device = select_device(device, batch_size=batch_size)
    save_dir = increment_path(Path(project) / name, exist_ok=exist_ok)
    (save_dir / "labels" if save_txt else save_dir).mkdir(parents=True, exist_ok=True)
    model = ensemble.load(weights, device)
    precision = amp.inference_precision(device, half)
    model.half() if precision.dtype == torch.float16 else model.float()
    imgsz = sizes.check_img_size(imgsz, max(int(model.stride.max()), 32), floor=0, warn=False)
    return model, device, precision, imgsz, save_dir


@torch.inference_mode()
def run(data, weights=None, batch_size=32, imgsz=640, conf_thres=0.001, iou_thres=0.6, max_det=300, task="val",
        device="", workers=8, single_cls=False, augment=False, verbose=False, save_txt=False, save_conf=False,
        save_json=False, project=ROOT / "runs/val", name="exp", exist_ok=False, half=False, model=None,
        dataloader=None, save_dir=Path(""), plots=True, compute_loss=None, callbacks=None):
    """Evaluate; returns (metrics.ValResults(precision, recall, map50, map, box_loss, obj_loss, cls_loss),
    maps (nc,), (t_pre, t_inf, t_nms) ms per image).

    ``data`` is a yaml path or a dict (see data.config.check_dataset). With ``model`` (train.py) the model is used
    as is, ``dataloader`` must be given, and no run directory or speed line is made.
    """
    training = model is not None
    if save_conf and not save_txt:
        raise ValueError("--save-conf adds confidences to the --save-txt labels (--save-json always has them): "
                         "add --save-txt")
    model, device, precision, imgsz, new_dir = _model_setup(model, weights, device, half, imgsz, batch_size, project,
                                                       name, exist_ok, save_txt)
    data = data if training else check_dataset(data)  # train.py passes its already-checked dict
    model.eval()
    nc = 1 if single_cls else int(data["nc"])
    if not training and not single_cls and model.nc != nc:
        raise ValueError(f"{weights} has nc={model.nc} classes but the data has nc={nc}: use matching weights")
    if dataloader is None:
        rect = task != "speed"
        task = task if task in ("train", "val", "test") else "val"
        dataloader = create_dataloader(data[task], imgsz, batch_size, max(int(model.stride.max()), 32),
                                       single_cls, pad=0.5 if rect else 0.0, rect=rect, workers=workers,
                                       prefix=f"{task}: ", nc=int(data["nc"]), labels_dir=data.get("labels"))[0]
    is_coco = isinstance(data.get("val"), str) and data["val"].endswith("coco/val2017.txt")
    ctx = _Context(save_dir=Path(save_dir) if training else new_dir, training=training, nc=nc,
                   names={0: "item"} if single_cls else dict(data.get("names") or model.names),  # the labels' own
                   class_map=coco.coco80_to_coco91() if is_coco else None, is_coco=is_coco, plots=plots,
                   save_txt=save_txt, save_conf=save_conf, save_json=save_json, single_cls=single_cls)
    acc = _Accumulator(nc, device, plots)
    nms_kw = {"conf_thres": conf_thres, "iou_thres": iou_thres, "multi_label": True, "agnostic": single_cls,
              "max_det": max_det, "time_limit": math.inf}
    dt = _loop(model, dataloader, precision, augment, compute_loss, nms_kw, acc, ctx)
    summary = _summarise(acc, nc)
    _log_table(summary, acc.seen, ctx.names, (verbose or (nc < 50 and not training)) and nc > 1)
    _run_callbacks(callbacks, summary, acc.cm)
    t = tuple(x / max(acc.seen, 1) * 1e3 for x in dt)
    if not training:
        shape = (batch_size, 3, imgsz, imgsz)
        LOGGER.info("Speed: %.1fms pre-process, %.1fms inference, %.1fms NMS per image at shape %s" % (*t, shape))
    if plots:
        _plot_metrics(summary, acc.cm, ctx.save_dir, ctx.names)
    map50, map_ = summary.map50, summary.map
    if save_json and acc.jdict:
        map50, map_ = _coco_eval(acc.jdict, dataloader, data, weights, ctx, map50, map_)
    model.float()
    if not training:
        _log_saved(ctx.save_dir, save_txt)
    losses = [float(acc.loss[k]) / max(len(dataloader), 1) for k in LOSS_KEYS]
    results = metrics.ValResults(float(summary.mp), float(summary.mr), float(map50), float(map_), *losses)
    return results, _per_class_maps(summary, nc, map_), t


@dataclass
class _Context:
    """What one validation run writes where, fixed before the loop starts."""

    save_dir: Path
    training: bool
    nc: int
    names: dict
    class_map: list | None
    is_coco: bool
    plots: bool
    save_txt: bool
    save_conf: bool
    save_json: bool
    single_cls: bool


def _loop(model, dataloader, precision, augment: bool, compute_loss, nms_kw: dict, acc: _Accumulator,
          ctx: _Context) -> list:
    """Run the model over ``dataloader`` into ``acc``; returns [pre-process, inference, NMS] seconds in total."""
    device = acc.iouv.device
    dt = [0.0, 0.0, 0.0]
    pbar = tqdm(dataloader, desc=HEADER, bar_format="{l_bar}{bar:10}{r_bar}", disable=not LOGGER.isEnabledFor(20))
    for batch_i, (im, targets, paths, shapes) in enumerate(pbar):
        t0 = _sync(device)
        im = im.to(device, non_blocking=True)
        im = (im.half() if precision.dtype == torch.float16 else im.float()) / 255
        targets = targets.to(device)
        t1 = _sync(device)
        with precision.autocast() if precision.dtype == torch.bfloat16 else contextlib.nullcontext():
            preds, train_out = model(im, augment=augment) if not compute_loss else model(im)
        if precision.dtype == torch.bfloat16:  # NMS, losses and metrics in FP32
            preds, train_out = amp.to_float(preds), amp.to_float(train_out)
        t2 = _sync(device)
        if compute_loss:
            _, terms = compute_loss(train_out, targets)
            for k in LOSS_KEYS:
                acc.loss[k] += terms[k].detach().reshape(())
        targets[:, 2:] *= torch.tensor((im.shape[3], im.shape[2]) * 2, device=device)
        # No NMS time limit: upstream's 0.5 + 0.05 * bs seconds silently drops images on a busy CPU, which
        # makes mAP depend on machine load (the pre-NMS top-k cap bounds the cost instead).
        out = nms.non_max_suppression(preds, **nms_kw)
        t3 = _sync(device)
        dt = [dt[0] + t1 - t0, dt[1] + t2 - t1, dt[2] + t3 - t2]
        for si, pred in enumerate(out):
            _add_image(acc, ctx, pred, targets[targets[:, 0] == si, 1:], im.shape[2:], shapes[si], paths[si])
        if ctx.plots and batch_i < 3:
            _plot_batch(im, targets, out, paths, ctx.save_dir, batch_i, ctx.names)
    return dt


def _add_image(acc: _Accumulator, ctx: _Context, pred, labels, im_shape, shape, path):
    """One image's NMS output into the stats, and its --save-txt / --save-json rows."""
    if ctx.single_cls:
        pred[:, 5] = 0
    shape0, ratio_pad = shape
    predn = acc.add_image(pred, labels, im_shape, shape0, ratio_pad)
    if ctx.save_txt:
        save_one_txt(predn, ctx.save_conf, shape0, ctx.save_dir / "labels" / f"{Path(path).stem}.txt")
    if ctx.save_json:
        acc.jdict += coco.predictions(predn, path, ctx.class_map)


def _log_saved(save_dir: Path, save_txt: bool):
    n_txt = len(list((save_dir / "labels").glob("*.txt"))) if save_txt else 0
    LOGGER.info("Results saved to %s%s", save_dir, f"\n{n_txt} labels saved to {save_dir / 'labels'}"
                if save_txt else "")


def _sync(device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def _plot_batch(im, targets, out, paths, save_dir, batch_i, names):
    from utils import plots as batch_plots  # cv2 drawing, only when plotting

    batch_plots.plot_images(im, targets, paths, save_dir / f"val_batch{batch_i}_labels.jpg", names)
    batch_plots.plot_images(im, output_to_target(out), paths, save_dir / f"val_batch{batch_i}_pred.jpg", names)


@dataclass
class _Summary:
    """Dataset-level numbers from the accumulated stats; ``ap_stats`` is None when nothing was predicted."""

    nt: np.ndarray  # (nc,) label counts
    mp: float = 0.0
    mr: float = 0.0
    map50: float = 0.0
    map: float = 0.0
    ap_stats: metrics.APStats | None = None

    @property
    def ap50(self):
        return None if self.ap_stats is None else self.ap_stats.ap[:, 0]

    @property
    def ap(self):  # (nc,) AP@0.5:0.95 per class
        return None if self.ap_stats is None else self.ap_stats.ap.mean(1)


def _summarise(acc: _Accumulator, nc: int) -> _Summary:
    stats = [torch.cat(x, 0).cpu().numpy() for x in zip(*acc.stats)]
    nt = np.bincount(stats[3].astype(int), minlength=nc) if len(stats) else np.zeros(nc, dtype=int)
    if not (len(stats) and stats[0].any()):
        return _Summary(nt)
    s = metrics.ap_per_class(*stats)
    ap = s.ap.mean(1)
    return _Summary(nt, s.p.mean(), s.r.mean(), s.ap[:, 0].mean(), ap.mean(), s)


def _log_table(summary: _Summary, seen: int, names: dict, per_class: bool):
    LOGGER.info(HEADER)
    LOGGER.info(ROW % ("all", seen, summary.nt.sum(), summary.mp, summary.mr, summary.map50, summary.map))
    if summary.nt.sum() == 0:
        LOGGER.warning("no labels found in set, can not compute metrics without labels")
    s = summary.ap_stats
    if per_class and s is not None:
        for i, c in enumerate(s.classes):
            LOGGER.info(ROW % (names.get(int(c), str(c)), seen, summary.nt[c], s.p[i], s.r[i], summary.ap50[i],
                               summary.ap[i]))


def _run_callbacks(callbacks, summary: _Summary, cm):
    if callbacks is None:
        return
    s = summary.ap_stats
    tp, fp, p, r, f1, ap_class = (None,) * 6 if s is None else (s.tp, s.fp, s.p, s.r, s.f1, s.classes)
    callbacks.run("on_val_end", summary.nt, tp, fp, p, r, f1, summary.ap, summary.ap50, ap_class, cm)  # upstream's


def _plot_metrics(summary: _Summary, cm, save_dir: Path, names: dict):
    """PR/F1/P/R curves (when anything was predicted) and the confusion matrix, drawn by utils.metric_plots."""
    from utils import metric_plots  # matplotlib only when plotting

    if summary.ap_stats is not None:
        metric_plots.plot_ap_curves(summary.ap_stats, save_dir, names)
    if cm is not None:
        metric_plots.plot_confusion_matrix(cm.matrix, save_dir / "confusion_matrix.png", list(names.values()))


def _per_class_maps(summary: _Summary, nc: int, map_: float) -> np.ndarray:
    """(nc,) mAP50-95 per class; classes without stats get the overall ``map_`` (pycocotools' on COCO, as upstream)."""
    maps = np.zeros(nc) + map_
    if summary.ap_stats is not None:
        for i, c in enumerate(summary.ap_stats.classes):
            maps[c] = summary.ap[i]
    return maps


def _coco_eval(jdict, dataloader, data, weights, ctx: _Context, map50, map_):
    """Write predictions (and, for non-COCO data, ground truth built from the labels) and run pycocotools.

    With COCO's official annotations its mAPs replace ours (as upstream); otherwise they are reported beside.
    """
    w = Path(weights[0] if isinstance(weights, (list, tuple)) else weights or "model").stem
    pred_json = coco.save_json(jdict, ctx.save_dir / f"{w}_predictions.json")
    LOGGER.info("Evaluating pycocotools mAP... saving %s", pred_json)
    anno = Path(data.get("path", "")) / "annotations" / "instances_val2017.json"
    ds = dataloader.dataset
    if not (ctx.is_coco and anno.exists()):
        gt = coco.ground_truth(ds.im_files, ds.labels, ds.shapes, ctx.names, ctx.class_map)
        anno = coco.save_json(gt, ctx.save_dir / "ground_truth.json")
    stats = coco.evaluate(anno, pred_json, img_ids=[coco.image_id(f) for f in ds.im_files])
    if stats is not None and ctx.is_coco:
        map_, map50 = float(stats[0]), float(stats[1])
    return map50, map_


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser("YOLOv5 validation", add_help=add_help)
    p.add_argument("--data", type=str, default="data/coco128.yaml", help="dataset.yaml path")
    p.add_argument("--weights", nargs="+", type=str, default="yolov5s.pt", help="model path(s)")
    p.add_argument("--batch-size", type=int, default=32, help="batch size")
    p.add_argument("--imgsz", "--img", "--img-size", type=int, default=640, help="inference size (pixels)")
    p.add_argument("--conf-thres", type=float, default=0.001, help="confidence threshold")
    p.add_argument("--iou-thres", type=float, default=0.6, help="NMS IoU threshold")
    p.add_argument("--max-det", type=int, default=300, help="maximum detections per image")
    p.add_argument("--task", default="val", choices=("train", "val", "test", "speed"), help="split or speed")
    p.add_argument("--device", default="", help="cuda device, i.e. 0 or 0,1,2,3 or cpu")
    p.add_argument("--workers", type=int, default=8, help="max dataloader workers")
    p.add_argument("--single-cls", action="store_true", help="treat as single-class dataset")
    p.add_argument("--augment", action="store_true", help="augmented inference (TTA)")
    p.add_argument("--verbose", action="store_true", help="report mAP by class")
    p.add_argument("--save-txt", action="store_true", help="save results to *.txt")
    p.add_argument("--save-conf", action="store_true", help="save confidences in --save-txt labels")
    p.add_argument("--save-json", action="store_true", help="save a COCO-JSON results file and run pycocotools")
    p.add_argument("--project", default=ROOT / "runs/val", help="save to project/name")
    p.add_argument("--name", default="exp", help="save to project/name")
    p.add_argument("--exist-ok", action="store_true", help="existing project/name ok, do not increment")
    p.add_argument("--half", action="store_true",
                   help="half precision: FP16 on CUDA, bf16 autocast on a CPU with native bf16 (else FP32)")
    cli.add_refused(p, "val")  # upstream's --save-hybrid and --dnn: a clear error, not 'unrecognized'
    return p


def parse_opt(argv=None) -> argparse.Namespace:
    opt = get_args_parser().parse_args(argv)
    opt.save_json |= str(opt.data).endswith("coco.yaml")
    return opt


def main(opt: argparse.Namespace):
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    kwargs = cli.checked_kwargs(opt, "val")
    if opt.task in ("train", "val", "test"):
        if opt.conf_thres > 0.001:
            LOGGER.warning("confidence threshold %s > 0.001 produces invalid results", opt.conf_thres)
        return run(**kwargs)
    given = (("--conf-thres", opt.conf_thres, 0.001), ("--iou-thres", opt.iou_thres, 0.6))
    fixed = [flag for flag, value, default in given if value != default]
    if fixed:
        raise ValueError(f"{', '.join(fixed)}: --task speed times NMS at upstream's fixed conf 0.25 and IoU 0.45; "
                         "drop them")
    weights = opt.weights if isinstance(opt.weights, list) else [opt.weights]
    results = []
    for w in weights:  # --task speed: throughput settings, no json, no plots
        kw = {**kwargs, "weights": w, "conf_thres": 0.25, "iou_thres": 0.45, "save_json": False, "plots": False}
        results.append(run(**kw))
    return results


if __name__ == "__main__":
    cli.main_or_exit(main, parse_opt())
