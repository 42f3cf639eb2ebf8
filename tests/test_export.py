"""export.py: ONNX graph contract (names, shapes, metadata, opset) and onnxruntime parity with PyTorch (dynamo
exporter); TorchScript trace, its config.txt and parity."""
import os

import numpy as np
import pytest

import export


def _require(module: str):
    try:
        return __import__(module)
    except ImportError:
        msg = f"{module} not installed (pip install -r requirements-export.txt)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg + " (CI=true: must not skip)")
        pytest.skip(msg)


@pytest.fixture(scope="module")
def ort():
    _require("onnx")
    return _require("onnxruntime")


def test_onnx_static_export_contract_and_parity(ort, yolov5n_pt, coco8_dir, tmp_path):
    import onnx

    image = sorted((coco8_dir / "images" / "val").glob("*.jpg"))[2]
    out = export.run(str(yolov5n_pt), imgsz=[640], source=image, output=tmp_path / "n.onnx")
    assert out["shape"] == (1, 25200, 85)
    m = onnx.load(str(out["onnx"]))
    assert [i.name for i in m.graph.input] == ["images"] and [o.name for o in m.graph.output] == ["output0"]
    dims = [d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, 640, 640]
    assert {o.domain: o.version for o in m.opset_import}[""] == export.DEFAULT_OPSET == 18
    meta = {p.key: p.value for p in m.metadata_props}
    assert meta["stride"] == "32" and meta["names"].startswith("{0: 'person', 1: 'bicycle'")
    # Scores agree to FP32 precision. Boxes are pixels (up to ~1000 px) where FP32 accumulation error alone is
    # ~1e-3 px (PyTorch FP32 vs FP64 measures 1.2e-3..3.6e-3 on coco8): compare them in units of the input size.
    assert out["max_abs_diff_scores"] < 1e-4 and out["max_abs_diff_norm"] < 1e-5
    assert out["onnx_vs_fp64"] <= 2 * out["torch_vs_fp64"]


def test_onnx_dynamic_axes_run_at_another_size(ort, yolov5n_pt, tmp_path):
    import torch

    from models.weights import load_model

    out = export.run(str(yolov5n_pt), imgsz=[320], dynamic=True, output=tmp_path / "d.onnx")
    session = ort.InferenceSession(str(out["onnx"]), providers=["CPUExecutionProvider"])
    image = export.load_image(None, [256, 416])
    y = session.run(["output0"], {"images": np.stack([image, image[:, ::-1].copy()])})[0]
    model = export._prepare(load_model(yolov5n_pt), dynamic=True)
    with torch.no_grad():
        ref = model(torch.from_numpy(np.stack([image, image[:, ::-1].copy()])))[0].numpy()
    assert y.shape == ref.shape == (2, 3 * (32 * 52 + 16 * 26 + 8 * 13), 85)
    graph = __import__("onnx").load(str(out["onnx"])).graph
    assert [d.dim_param for d in graph.input[0].type.tensor_type.shape.dim] == ["batch", "", "height", "width"]
    assert [d.dim_param for d in graph.output[0].type.tensor_type.shape.dim][:2] == ["batch", "anchors"]
    assert np.abs(y[..., 4:] - ref[..., 4:]).max() < 1e-4 and np.abs(y - ref).max() < 2e-3


def test_torchscript_trace_config_and_parity(yolov5n_pt, coco8_dir, tmp_path):
    import json

    import torch

    from models.weights import load_model

    image = sorted((coco8_dir / "images" / "val").glob("*.jpg"))[0]
    out = export.run(str(yolov5n_pt), imgsz=[320, 256], include=("torchscript",), source=image,
                     output=tmp_path / "n.pt")
    assert out["torchscript"] == tmp_path / "n.torchscript" and "onnx" not in out
    assert out["torchscript_max_abs_diff"] < 1e-4
    extra = {"config.txt": ""}
    loaded = torch.jit.load(str(out["torchscript"]), _extra_files=extra)
    config = json.loads(extra["config.txt"])
    assert config["shape"] == [1, 3, 320, 256] and config["stride"] == 32 and config["names"]["0"] == "person"
    x = torch.from_numpy(export.load_image(image, [320, 256])[None])  # the check's input, checked again here
    model = export._prepare(load_model(yolov5n_pt), dynamic=False)
    with torch.no_grad():
        assert torch.allclose(loaded(x)[0], model(x)[0], atol=1e-4)


def test_export_rejects_unknown_format(yolov5n_pt):
    with pytest.raises(ValueError, match="unsupported"):
        export.run(str(yolov5n_pt), include=("tflite",))
