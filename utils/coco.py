"""COCO-format JSON for predictions and ground truth, and the pycocotools bbox evaluation.

Any YOLO-format dataset can be evaluated with pycocotools: ``ground_truth`` builds the annotation file from
the YOLO labels (boxes only, area = box area, iscrowd = 0), so the numbers differ from the official COCO
evaluation only where COCO's own annotations carry segment areas or crowd regions.
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
from pathlib import Path

import numpy as np

LOGGER = logging.getLogger(__name__)

STATS_NAMES = (
    "AP@[.50:.95]", "AP@.50", "AP@.75", "AP small", "AP medium", "AP large",
    "AR@1", "AR@10", "AR@100", "AR small", "AR medium", "AR large",
)


def coco80_to_coco91() -> list[int]:
    """Official COCO category ids (1..90 with gaps) of the 80 contiguous training classes."""
    missing = {12, 26, 29, 30, 45, 66, 68, 69, 71, 83}
    return [i for i in range(1, 91) if i not in missing]


def image_id(path: str | Path) -> int | str:
    """COCO image id of a file: int(stem) when the stem is numeric (COCO names), else the stem."""
    stem = Path(path).stem
    return int(stem) if stem.isnumeric() else stem


def predictions(predn, path: str | Path, class_map: list[int] | None = None) -> list[dict]:
    """Detections of one image as COCO result dicts.

    predn: (n, 6) [x1, y1, x2, y2, conf, cls] in original-image pixels (tensor or array). Returns
    ``{image_id, category_id, bbox: [x_topleft, y_topleft, w, h] (3 dp), score (5 dp)}`` per row;
    category_id is ``class_map[cls]`` if given (COCO 80 -> 91) else the class index.
    """
    predn = np.asarray(predn.cpu() if hasattr(predn, "cpu") else predn, dtype=np.float64).reshape(-1, 6)
    xywh = predn[:, :4].copy()
    xywh[:, 2:] -= xywh[:, :2]
    iid = image_id(path)
    out = []
    for box, score, cls in zip(xywh.tolist(), predn[:, 4].tolist(), predn[:, 5].astype(int).tolist()):
        out.append({
            "image_id": iid,
            "category_id": class_map[cls] if class_map else cls,
            "bbox": [round(x, 3) for x in box],
            "score": round(score, 5),
        })
    return out


def ground_truth(im_files, labels, shapes, names: dict, class_map: list[int] | None = None) -> dict:
    """COCO annotation dict built from YOLO labels.

    im_files: image paths; labels: per image (n, 5) [cls, cx, cy, w, h] normalised; shapes: per image (w, h)
    pixels; names: {class index: name}. Boxes become top-left xywh pixels; area = w * h; iscrowd = 0.
    """
    cat_id = (lambda c: class_map[c]) if class_map else (lambda c: c)
    images, annotations = [], []
    for f, lb, (w, h) in zip(im_files, labels, shapes):
        iid = image_id(f)
        images.append({"id": iid, "file_name": Path(f).name, "width": int(w), "height": int(h)})
        for c, cx, cy, bw, bh in np.asarray(lb, dtype=np.float64).reshape(-1, 5).tolist():
            box = [(cx - bw / 2) * w, (cy - bh / 2) * h, bw * w, bh * h]
            annotations.append({
                "id": len(annotations) + 1, "image_id": iid, "category_id": cat_id(int(c)),
                "bbox": [round(x, 3) for x in box], "area": box[2] * box[3], "iscrowd": 0,
            })
    categories = [{"id": cat_id(int(k)), "name": v} for k, v in sorted(names.items())]
    return {"images": images, "annotations": annotations, "categories": categories}


def save_json(obj, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return path


def evaluate(gt_json: str | Path, pred_json: str | Path, img_ids=None) -> np.ndarray | None:
    """Run pycocotools COCOeval('bbox'); returns its 12 summary stats (stats[0] = mAP50-95, stats[1] = mAP50).

    img_ids restricts the evaluation to those images. Returns None (logged) when pycocotools is missing,
    there are no predictions, or the evaluation fails.
    """
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError:
        LOGGER.warning("pycocotools not installed: skipping COCO evaluation (pip install pycocotools)")
        return None
    try:
        dets = json.loads(Path(pred_json).read_text())
        if not dets:
            LOGGER.warning("no predictions in %s: skipping COCO evaluation", pred_json)
            return None
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):  # pycocotools prints; route it to our logger
            gt = COCO(str(gt_json))
            ev = COCOeval(gt, gt.loadRes(dets), "bbox")
            if img_ids is not None:
                ev.params.imgIds = list(img_ids)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        LOGGER.info("pycocotools:\n%s", "\n".join(ln for ln in buf.getvalue().splitlines() if "Average" in ln))
        return np.asarray(ev.stats)
    except Exception as e:  # noqa: BLE001 - a broken annotation file must not abort validation
        LOGGER.warning("pycocotools evaluation failed: %s", e)
        return None
