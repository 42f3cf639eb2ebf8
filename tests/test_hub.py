"""hubconf.py through torch.hub.load(..., source='local'), offline: the same detections as detect.py, whatever
the input type (file name, numpy array, PIL image, one or a list)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

import detect

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def hub_model(yolov5n_pt):
    return torch.hub.load(str(ROOT), "custom", path=str(yolov5n_pt), source="local")


@pytest.fixture(scope="module")
def images(coco8_dir):
    return sorted((coco8_dir / "images" / "val").glob("*.jpg"))[:2]


def _same(a: torch.Tensor, b: torch.Tensor, px: float = 1.0):
    """Same detections up to detect.py's rounding of the boxes to whole pixels."""
    assert a.shape == b.shape and a.shape[0] > 0
    assert torch.equal(a[:, 5], b[:, 5])
    assert torch.allclose(a[:, 4], b[:, 4], atol=1e-4)
    assert (a[:, :4] - b[:, :4]).abs().max() <= px


def test_custom_matches_detect_py(hub_model, yolov5n_pt, images, tmp_path):
    ref = detect.run(weights=str(yolov5n_pt), source=str(images[0].parent), nosave=True, project=str(tmp_path))
    for p in images:  # one image a call: the same letterbox as detect.py's (a list shares one batch shape)
        _same(hub_model(str(p)).xyxy[0], ref.detections[str(p)])
    results = hub_model([str(p) for p in images])
    assert len(results) == 2 and results.names[0] == "person" and results.files == [p.name for p in images]
    assert results.shapes == [cv2.imread(str(p)).shape[:2] for p in images]
    twice = hub_model([str(images[0])] * 2)
    assert torch.equal(twice.xyxy[0], twice.xyxy[1])
    _same(twice.xyxy[0], ref.detections[str(images[0])])
    # the other box formats are the same rows
    h, w = results.shapes[0]
    assert torch.allclose(results.xyxyn[0][:, :4] * torch.tensor([w, h, w, h]), results.xyxy[0][:, :4])
    assert torch.allclose(results.xywh[0][:, 2], results.xyxy[0][:, 2] - results.xyxy[0][:, 0])
    assert results.tolist()[0][0]["name"] == results.names[int(results.xyxy[0][0, 5])]


def test_numpy_and_pil_inputs_give_the_file_results(hub_model, images):
    by_file = hub_model(str(images[0])).xyxy[0]
    rgb = cv2.imread(str(images[0]))[..., ::-1]
    _same(hub_model(rgb).xyxy[0], by_file, px=1e-3)  # the same pixels
    pil = Image.open(images[0])  # PIL's JPEG decoder may differ from OpenCV's by a grey level here and there
    _same(hub_model([pil]).xyxy[0], by_file, px=2.0)
    with pytest.raises(ValueError, match="no network"):
        hub_model("https://example.com/bus.jpg")


def test_architecture_entry_point_without_weights():
    model = torch.hub.load(str(ROOT), "yolov5n", pretrained=False, classes=3, source="local")
    assert model.model.nc == 3 and len(model.names) == 3
    results = model([np.full((96, 128, 3), 114, np.uint8)] * 2)
    assert len(results) == 2 and all(d.shape[1] == 6 for d in results.xyxy)
    raw = model(torch.zeros(1, 3, 64, 64))[0]  # a tensor goes straight to the model
    assert raw.shape[-1] == 3 + 5


def test_pretrained_reads_a_local_file_and_never_downloads(yolov5n_pt, images, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        torch.hub.load(str(ROOT), "yolov5n", source="local")
    (tmp_path / "yolov5n.pt").symlink_to(yolov5n_pt)
    model = torch.hub.load(str(ROOT), "yolov5n", source="local")  # pretrained=True, classes=80: the file as is
    custom = torch.hub.load(str(ROOT), "custom", path=str(yolov5n_pt), source="local")
    assert torch.equal(model(str(images[0])).xyxy[0], custom(str(images[0])).xyxy[0])
    three = torch.hub.load(str(ROOT), "yolov5n", classes=3, source="local", autoshape=False)
    backbone = "model.0.conv.weight"
    assert three.nc == 3 and torch.equal(three.state_dict()[backbone], custom.model.state_dict()[backbone])
