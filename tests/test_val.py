"""val.py: upstream-identical metrics on coco8 with the published yolov5n, COCO JSON and pycocotools, train mode."""
import json

import numpy as np
import pytest
import torch

import val
from utils import coco, metrics
from utils.callbacks import Callbacks

SPLITS = {"val": "coco8/images/val", "train": "coco8/images/train"}


def _data(coco8_dir, names):
    return {"path": str(coco8_dir), "train": "images/train", "val": "images/val", "test": None,
            "names": names, "nc": len(names)}


@pytest.fixture(scope="module")
def coco8_names(yolov5n_pt):
    from models.weights import load_model

    return load_model(yolov5n_pt).names


@pytest.fixture(scope="module")
def coco8_runs(coco8_dir, yolov5n_pt, coco8_names, tmp_path_factory):
    """Both splits at the reference settings; per-class values captured through the on_val_end hook."""
    project = tmp_path_factory.mktemp("runs")
    out = {}
    for task in SPLITS:
        per_class = {}
        cb = Callbacks()
        cb.register("on_val_end", lambda nt, tp, fp, p, r, f1, ap, ap50, cls, cm, d=per_class: d.update(
            {coco8_names[int(c)]: (p[i], r[i], ap50[i], ap[i]) for i, c in enumerate(cls)}))
        results, maps, times = val.run(_data(coco8_dir, coco8_names), weights=str(yolov5n_pt), batch_size=4,
                                       imgsz=640, conf_thres=0.001, iou_thres=0.6, task=task, workers=0,
                                       project=project, name=task, save_json=True, plots=task == "val",
                                       callbacks=cb)
        out[task] = {"results": results, "maps": maps, "times": times, "per_class": per_class,
                     "dir": project / task}
    return out


@pytest.mark.parametrize("task", list(SPLITS))
def test_coco8_matches_upstream_reference(coco8_runs, reference_json, task):
    ref = json.loads(reference_json.read_text())["val"][SPLITS[task]]
    mp, mr, map50, map_ = coco8_runs[task]["results"][:4]
    got = {"P": mp, "R": mr, "mAP50": map50, "mAP50-95": map_}
    for k, v in got.items():
        assert v == pytest.approx(ref[k], abs=0.002), f"{task} {k}: ours {v:.4f} vs upstream {ref[k]}"
    per_class = coco8_runs[task]["per_class"]
    assert set(per_class) == set(ref["per_class"])
    for name, ref_vals in ref["per_class"].items():
        assert np.allclose(per_class[name], ref_vals, atol=0.002), f"{task} {name}: {per_class[name]} vs {ref_vals}"


def test_coco8_return_contract(coco8_runs, coco8_names):
    r = coco8_runs["val"]
    assert len(r["results"]) == 7 and r["results"][4:] == (0.0, 0.0, 0.0)  # no compute_loss: zero val losses
    assert isinstance(r["results"], metrics.ValResults) and r["results"].map == r["results"][3]
    assert r["maps"].shape == (80,) and r["maps"][0] == pytest.approx(r["per_class"]["person"][3])
    assert r["maps"][1] == pytest.approx(r["results"][3])  # absent class: overall mAP
    assert len(r["times"]) == 3 and all(t >= 0 for t in r["times"])
    for f in ("PR_curve.png", "F1_curve.png", "P_curve.png", "R_curve.png", "confusion_matrix.png",
              "val_batch0_labels.jpg", "val_batch0_pred.jpg"):
        assert (r["dir"] / f).exists()


def test_coco_json_schema_and_pycocotools_agree(coco8_runs, coco8_dir):
    for task, r in coco8_runs.items():
        preds = json.loads((r["dir"] / "yolov5n_predictions.json").read_text())
        assert preds and set(preds[0]) == {"image_id", "category_id", "bbox", "score"}
        for d in preds[:50]:
            assert isinstance(d["image_id"], int) and isinstance(d["category_id"], int)
            assert len(d["bbox"]) == 4 and all(round(x, 3) == x for x in d["bbox"])
            assert round(d["score"], 5) == d["score"] and d["bbox"][2] >= 0 and d["bbox"][3] >= 0
        ids = {p.stem for p in (coco8_dir / "images" / task).glob("*.jpg")}
        assert {str(d["image_id"]).zfill(12) for d in preds} <= ids
        stats = coco.evaluate(r["dir"] / "ground_truth.json", r["dir"] / "yolov5n_predictions.json")
        ours = r["results"][3]
        # Known differences (docs/evaluation.md): pycocotools keeps 100 detections per image, samples the
        # precision envelope at recall thresholds instead of interpolating, and counts area ranges.
        assert stats[0] == pytest.approx(ours, abs=0.01), f"{task}: pycocotools {stats[0]:.4f} vs ours {ours:.4f}"


def test_ground_truth_json_from_yolo_labels():
    gt = coco.ground_truth(["a/000000000007.jpg", "b/img_x.png"],
                           [np.array([[1, 0.5, 0.5, 0.2, 0.4]]), np.zeros((0, 5))],
                           [(100, 50), (10, 10)], {0: "cat", 1: "dog"})
    assert [im["id"] for im in gt["images"]] == [7, "img_x"]
    (ann,) = gt["annotations"]
    assert ann["bbox"] == [40.0, 15.0, 20.0, 20.0] and ann["area"] == 400 and ann["category_id"] == 1
    assert gt["categories"] == [{"id": 0, "name": "cat"}, {"id": 1, "name": "dog"}]
    res = coco.predictions(torch.tensor([[10.0, 20.0, 30.5, 60.25, 0.1234567, 2.0]]), "x/12.jpg",
                           coco.coco80_to_coco91())
    assert res == [{"image_id": 12, "category_id": 3, "bbox": [10.0, 20.0, 20.5, 40.25], "score": 0.12346}]


def test_training_mode_in_memory_model_and_losses(coco8_dir, yolov5n_pt, coco8_names, tmp_path, monkeypatch):
    from data.loader import create_dataloader
    from models.weights import load_model

    model = load_model(yolov5n_pt, fuse=False)
    loader = create_dataloader(str(coco8_dir / "images" / "val"), 320, 2, 32, rect=True, pad=0.5, workers=0)[0]
    seen = []

    def compute_loss(train_out, targets):
        seen.append((len(train_out), float(targets[:, 2:].max())))
        one = torch.ones(())
        return one * 6, {"task/box": one, "task/obj": one * 2, "task/cls": one * 3}

    monkeypatch.chdir(tmp_path)
    results, maps, _ = val.run(_data(coco8_dir, coco8_names), model=model, dataloader=loader, plots=False,
                               compute_loss=compute_loss, save_dir=tmp_path)
    assert results[4:] == pytest.approx((1.0, 2.0, 3.0))  # per-batch means over 2 batches
    assert len(seen) == len(loader) and all(n == 3 and m <= 1 for n, m in seen)  # raw outputs, normalised xywh
    assert 0 < results[3] < results[2] <= 1 and maps.shape == (80,)
    assert not (tmp_path / "runs").exists() and not list(tmp_path.glob("exp*"))  # no run directory in training


def test_cli_defaults_and_save_txt(coco8_dir, yolov5n_pt, coco8_names, tmp_path):
    opt = val.get_args_parser().parse_args([])
    assert (opt.batch_size, opt.imgsz, opt.conf_thres, opt.iou_thres, opt.max_det, opt.task) == (
        32, 640, 0.001, 0.6, 300, "val")
    assert val.parse_opt(["--data", "x/coco.yaml"]).save_json
    val.run(_data(coco8_dir, coco8_names), weights=str(yolov5n_pt), batch_size=4, imgsz=256, workers=0,
            conf_thres=0.25, save_txt=True, save_conf=True, project=tmp_path, name="t", plots=False)
    files = sorted((tmp_path / "t" / "labels").glob("*.txt"))
    assert files, "no label files written"
    rows = np.loadtxt(files[0], ndmin=2)
    assert rows.shape[1] == 6 and (rows[:, 1:5] >= 0).all() and (rows[:, 1:5] <= 1).all()
    assert (rows[:, 5] > 0.25).all()
