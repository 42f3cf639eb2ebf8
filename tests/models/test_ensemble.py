"""models.ensemble: several --weights as one model, shared by val.py and detect.py."""
import pytest
import torch

import detect
from models import ensemble
from models.weights import load_model


def test_ensemble_concatenates_member_predictions(yolov5n_pt):
    model = ensemble.load([str(yolov5n_pt), str(yolov5n_pt)], "cpu")
    single = load_model(yolov5n_pt, fuse=True)
    assert isinstance(model, ensemble.Ensemble) and not model.training
    assert model.nc == single.nc and model.names == single.names and model.stride.tolist() == [8, 16, 32]
    x = torch.rand(1, 3, 128, 160, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        pred, train_out = model(x)
        ref = single(x)[0]
    assert train_out is None and torch.equal(pred, torch.cat((ref, ref), 1))


def test_one_weights_file_is_the_plain_model(yolov5n_pt):
    assert not isinstance(ensemble.load(str(yolov5n_pt), "cpu"), ensemble.Ensemble)
    assert not isinstance(ensemble.load([str(yolov5n_pt)], "cpu"), ensemble.Ensemble)


def test_members_must_share_nc(yolov5n_pt, bccd_teacher_pt):
    with pytest.raises(ValueError, match="must share nc"):
        ensemble.load([str(yolov5n_pt), str(bccd_teacher_pt)], "cpu")


def test_detect_with_a_doubled_ensemble_keeps_the_single_model_detections(yolov5n_pt, coco8_dir, tmp_path):
    # Two copies of one model give every box twice; NMS drops the exact duplicates, so detections are unchanged.
    src = str(coco8_dir / "images" / "val" / "000000000036.jpg")
    kw = {"source": src, "imgsz": (320, 320), "device": "cpu", "project": tmp_path, "nosave": True}
    one = detect.run(weights=[str(yolov5n_pt)], **kw).detections
    two = detect.run(weights=[str(yolov5n_pt)] * 2, **kw).detections
    assert one.keys() == two.keys() and all(len(v) for v in one.values())
    for k in one:
        assert torch.allclose(one[k], two[k])
