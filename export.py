"""Export a YOLOv5 checkpoint (ours or upstream's) to ONNX and/or TorchScript, each checked against PyTorch.

Usage:
    pip install -r requirements-export.txt
    python export.py --weights yolov5n.pt --include onnx --imgsz 640 [--dynamic] [--simplify]
    python export.py --weights best.pt --include torchscript onnx --source some.jpg     # parity on that image

ONNX goes through ``torch.onnx.export(..., dynamo=True)`` (torch.export + onnxscript), the exporter PyTorch
recommends since the TorchScript-based one was deprecated in 2.9; it needs onnxscript and writes opset 18 by
default (its lowest native opset). The graph maps input ``images`` (1, 3, H, W) float 0-1 RGB to output
``output0`` (1, N, 5 + nc) of decoded [cx, cy, w, h, obj, cls...] rows in input pixels, before NMS (N = 25200 at
640); metadata ``stride``, ``names``; onnxruntime runs the parity check. TorchScript (``.torchscript``) is
traced, as upstream's, with ``config.txt`` = {shape, stride, names} as an extra file, and checked with
``torch.jit.load``.
"""
from __future__ import annotations

import argparse
import json
import logging
import warnings
from pathlib import Path

import cv2
import numpy as np
import torch

from models.weights import load_model
from utils import sizes
from utils.device import select_device
from utils.letterbox import letterbox

LOGGER = logging.getLogger(__name__)
FORMATS = ("torchscript", "onnx")
DEFAULT_OPSET = 18  # the dynamo exporter's lowest native opset (lower ones go through onnx's version converter)


def _prepare(model: torch.nn.Module, dynamic: bool):
    """Export mode on every Detect head: a single decoded output, grids rebuilt per call when dynamic."""
    for m in model.modules():
        if hasattr(m, "export") and hasattr(m, "dynamic"):
            m.export, m.dynamic = True, dynamic
    return model


def export_onnx(model, im: torch.Tensor, file: Path, opset: int = DEFAULT_OPSET, dynamic: bool = False,
                simplify: bool = False) -> Path:
    """Export ``model`` on ``im`` into ``file`` (.onnx) with the dynamo exporter, check it, attach metadata."""
    import onnx

    try:
        import onnxscript  # noqa: F401 - the dynamo exporter needs it; say so before torch.onnx does, obscurely
    except ImportError as e:
        raise ImportError("ONNX export needs onnxscript: pip install -r requirements-export.txt") from e
    shapes = ({0: "batch", 2: "height", 3: "width"},) if dynamic else None  # named axes, as upstream's
    with warnings.catch_warnings():  # the dynamic grids are rebuilt per call, which torch.export reports
        warnings.filterwarnings("ignore", message=".*were assigned during export.*", category=UserWarning)
        torch.onnx.export(model, (im,), str(file), opset_version=opset, dynamo=True, input_names=["images"],
                          output_names=["output0"], dynamic_shapes=shapes, verbose=False)
    model_onnx = onnx.load(str(file))
    if dynamic:  # torch.export names the box axis by its formula in H and W: give it upstream's name
        model_onnx.graph.output[0].type.tensor_type.shape.dim[1].dim_param = "anchors"
    onnx.checker.check_model(model_onnx)
    meta = {"stride": int(max(model.stride)), "names": model.names}
    for k, v in meta.items():
        prop = model_onnx.metadata_props.add()
        prop.key, prop.value = k, str(v)
    if simplify:
        model_onnx = _simplify(model_onnx)
    onnx.save(model_onnx, str(file))
    return file


def export_torchscript(model, im: torch.Tensor, file: Path) -> Path:
    """Trace ``model`` on ``im`` into ``file`` (.torchscript) with config.txt {shape, stride, names}, as upstream."""
    config = {"shape": list(im.shape), "stride": int(max(model.stride)), "names": model.names}
    with warnings.catch_warnings():  # torch.jit is deprecated in favour of torch.export; the tracer warns about
        warnings.simplefilter("ignore", FutureWarning)  # the grid cache's Python branch (constant once traced)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(model, im, strict=False)
        traced.save(str(file), _extra_files={"config.txt": json.dumps(config)})
    return file


def check_torchscript(file: Path, model, image: np.ndarray) -> dict:
    """Max |difference| between the loaded ``file`` and ``model`` on ``image`` (3, h, w), and its config.txt."""
    extra = {"config.txt": ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        loaded = torch.jit.load(str(file), map_location="cpu", _extra_files=extra)
    x = torch.from_numpy(image[None])
    with torch.no_grad():
        y, ref = loaded(x)[0], model.cpu().float()(x)[0]
    if y.shape != ref.shape:
        raise RuntimeError(f"TorchScript output {tuple(y.shape)} != PyTorch {tuple(ref.shape)}")
    return {"max_abs_diff": float((y - ref).abs().max()), "config": json.loads(extra["config.txt"])}


def _simplify(model_onnx):
    """onnxslim or onnx-simplifier when installed; otherwise the graph is returned unchanged."""
    try:
        import onnxslim

        return onnxslim.slim(model_onnx)
    except ImportError:
        pass
    try:
        import onnxsim

        simplified, ok = onnxsim.simplify(model_onnx)
        return simplified if ok else model_onnx
    except ImportError:
        LOGGER.warning("--simplify: neither onnxslim nor onnxsim is installed, exporting unsimplified")
        return model_onnx


def load_image(source: str | Path | None, imgsz) -> np.ndarray:
    """(3, h, w) float32 0-1 RGB: the letterboxed ``source`` image, or a smooth synthetic one when None."""
    if source is None:
        yy, xx = np.mgrid[0 : imgsz[0], 0 : imgsz[1]]
        im = np.stack(((xx * 255 // imgsz[1]), (yy * 255 // imgsz[0]), (xx + yy) % 256), 2).astype(np.uint8)
    else:
        im = cv2.imread(str(source))
        if im is None:
            raise FileNotFoundError(f"cannot read image {source}")
        im = letterbox(im, tuple(imgsz), auto=False)[0][:, :, ::-1]  # BGR -> RGB
    return np.ascontiguousarray(im.transpose(2, 0, 1)).astype(np.float32) / 255


def check_onnx(file: Path, model, image: np.ndarray) -> dict:
    """Run ``file`` with onnxruntime and ``model`` with PyTorch on ``image`` (3, h, w), in FP32 and FP64.

    Returns max |difference| vs PyTorch FP32 of the whole output (``max_abs_diff``, boxes in pixels), with boxes
    divided by the input size (``max_abs_diff_norm``), of the obj/cls scores only (``max_abs_diff_scores``), and
    of ONNX and of PyTorch FP32 vs PyTorch FP64 (``onnx_vs_fp64``, ``torch_vs_fp64``). Boxes reach ~1000 px,
    where FP32 accumulation error alone is ~1e-3 px, in PyTorch as much as in onnxruntime.
    """
    import copy

    import onnxruntime

    session = onnxruntime.InferenceSession(str(file), providers=["CPUExecutionProvider"])
    y_onnx = session.run(["output0"], {"images": image[None]})[0]
    model64 = copy.deepcopy(model).cpu().double()
    with torch.no_grad():
        y32 = model.cpu().float()(torch.from_numpy(image[None]))[0].numpy()
        y64 = model64(torch.from_numpy(image[None]).double())[0].numpy()
    if y_onnx.shape != y32.shape:
        raise RuntimeError(f"ONNX output {y_onnx.shape} != PyTorch {y32.shape}")
    scale = np.ones(y32.shape[-1], dtype=np.float32)
    scale[:4] = max(image.shape[1:])  # boxes in units of the input size, scores as they are
    return {
        "max_abs_diff": float(np.abs(y_onnx - y32).max()),
        "max_abs_diff_norm": float((np.abs(y_onnx - y32) / scale).max()),
        "max_abs_diff_scores": float(np.abs(y_onnx[..., 4:] - y32[..., 4:]).max()),
        "onnx_vs_fp64": float(np.abs(y_onnx - y64).max()),
        "torch_vs_fp64": float(np.abs(y32 - y64).max()),
    }


def run(weights, imgsz=(640, 640), batch_size=1, device="cpu", include=("onnx",), opset=DEFAULT_OPSET, dynamic=False,
        simplify=False, source=None, output=None):
    """Export ``weights`` to each of ``include``; returns {'shape': PyTorch output shape, 'onnx': path,
    **check_onnx diffs (ONNX), 'torchscript': path, 'torchscript_max_abs_diff': ...}. ``output`` names the file
    (its suffix replaced per format); by default the files go next to the weights."""
    unknown = set(include) - set(FORMATS)
    if unknown:
        raise ValueError(f"unsupported --include {sorted(unknown)}; supported: {FORMATS}")
    device = select_device(device)
    model = _prepare(load_model(weights, device=device, fuse=True).eval(), dynamic)
    gs = int(max(model.stride))
    imgsz = sizes.check_img_size(list(imgsz) * 2 if len(imgsz) == 1 else list(imgsz), gs, floor=0, warn=False)
    im = torch.zeros(batch_size, 3, *imgsz, device=device)
    with torch.no_grad():
        for _ in range(2):  # dry runs build the grids
            shape = tuple(model(im)[0].shape)
    base = Path(output) if output else Path(weights)
    base.parent.mkdir(parents=True, exist_ok=True)
    image, out = load_image(source, imgsz), {"shape": shape}
    if "torchscript" in include:
        out["torchscript"] = export_torchscript(model, im, base.with_suffix(".torchscript"))
        out["torchscript_max_abs_diff"] = check_torchscript(out["torchscript"], model, image)["max_abs_diff"]
        LOGGER.info("TorchScript: saved %s; parity vs PyTorch max abs diff %.2e", out["torchscript"],
                    out["torchscript_max_abs_diff"])
    if "onnx" in include:
        out.update(_onnx(model, im, base.with_suffix(".onnx"), opset, dynamic, simplify, image, source))
    return out


def _onnx(model, im, file: Path, opset: int, dynamic: bool, simplify: bool, image: np.ndarray, source) -> dict:
    LOGGER.info("ONNX: exporting with torch %s (dynamo exporter), opset %d", torch.__version__, opset)
    export_onnx(model, im, file, opset, dynamic, simplify)
    diffs = check_onnx(file, model, image)
    LOGGER.info("ONNX: saved %s (%.1f MB)", file, file.stat().st_size / 1e6)
    LOGGER.info("ONNX parity on %s: onnxruntime vs PyTorch FP32 max abs diff %.2e (%.2e with boxes / input size, "
                "scores %.2e); vs PyTorch FP64: onnxruntime %.2e, PyTorch FP32 %.2e", source or "a synthetic image",
                diffs["max_abs_diff"], diffs["max_abs_diff_norm"], diffs["max_abs_diff_scores"],
                diffs["onnx_vs_fp64"], diffs["torch_vs_fp64"])
    return {"onnx": file, **diffs}


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser("YOLOv5 export", add_help=add_help)
    p.add_argument("--weights", type=str, default="yolov5s.pt", help="model.pt path")
    p.add_argument("--imgsz", "--img", "--img-size", nargs="+", type=int, default=[640, 640], help="image (h, w)")
    p.add_argument("--batch-size", type=int, default=1, help="batch size")
    p.add_argument("--device", default="cpu", help="cuda device, i.e. 0 or 0,1,2,3 or cpu")
    p.add_argument("--include", nargs="+", default=["onnx"], help=f"formats: {', '.join(FORMATS)}")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset version (dynamo exporter: 18+)")
    p.add_argument("--dynamic", action="store_true", help="dynamic batch and image axes")
    p.add_argument("--simplify", action="store_true", help="simplify the graph (needs onnxslim or onnxsim)")
    p.add_argument("--source", default=None, help="image for the onnxruntime parity check (default: synthetic)")
    p.add_argument("--output", default=None, help="output file, suffix set per format (default: next to the weights)")
    return p


def main(opt: argparse.Namespace):
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    return run(**vars(opt))


if __name__ == "__main__":
    main(get_args_parser().parse_args())
