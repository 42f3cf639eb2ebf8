"""torch.hub entry points, offline (``source='local'``):

    model = torch.hub.load('path/to/this/repo', 'custom', path='runs/train/exp/weights/best.pt', source='local')
    model = torch.hub.load('path/to/this/repo', 'yolov5n', pretrained=False, classes=3, source='local')
    results = model(['bus.jpg', numpy_rgb_array, pil_image], size=640)
    results.xyxy[0]   # (n, 6) tensor [x1, y1, x2, y2, conf, cls] in the first image's pixels; results.names

Nothing is downloaded: ``pretrained=True`` reads ``<name>.pt`` from the current folder or this repository's,
and fails with a message when it is not there. Results are plain tensors (models/autoshape.py), no pandas.
"""
from __future__ import annotations

from pathlib import Path

dependencies = ["torch", "torchvision", "numpy", "cv2", "yaml"]  # what torch.hub checks before calling us
ROOT = Path(__file__).resolve().parent


def _device(device):
    import torch

    from utils.device import select_device

    return device if isinstance(device, torch.device) else select_device("" if device is None else str(device))


def custom(path="yolov5s.pt", autoshape: bool = True, device=None, _verbose: bool = True):
    """A trained checkpoint (ours or an upstream YOLOv5 .pt; a list of paths gives an ensemble), fused, in eval
    mode; wrapped in AutoShape (images in, ``Detections`` out) unless ``autoshape=False``."""
    from models import ensemble
    from models.autoshape import AutoShape

    model = ensemble.load(path, _device(device))
    return AutoShape(model) if autoshape else model


def _create(name: str, pretrained: bool, channels: int, classes: int, autoshape: bool, device):
    import logging

    from models import weights
    from models.autoshape import AutoShape
    from models.yolo import Model

    device = _device(device)
    cfg = ROOT / "models" / f"{name}.yaml"
    if not pretrained:
        model = Model(cfg, ch=channels, nc=classes).to(device).eval()
        return AutoShape(model) if autoshape else model
    found = [p for p in (Path.cwd() / f"{name}.pt", ROOT / f"{name}.pt") if p.is_file()]
    if not found:
        raise FileNotFoundError(f"pretrained=True needs {name}.pt in {Path.cwd()} or {ROOT} (nothing is downloaded); "
                                f"or use custom(path=...), or pretrained=False")
    ckpt_model = weights.load_model(found[0], device, fuse=False)
    if channels == 3 and classes == ckpt_model.nc:
        model = ckpt_model
    else:  # a new head (and/or stem): keep every weight whose shape still fits
        model = Model(cfg, ch=channels, nc=classes).to(device)
        state = weights.intersect_state(ckpt_model.state_dict(), model.state_dict(), exclude=["anchor"])
        model.load_state_dict(state, strict=False)
        logging.getLogger("hub").info(f"Transferred {len(state)}/{len(model.state_dict())} items from {found[0]}")
    model = model.fuse().eval()
    return AutoShape(model) if autoshape else model


def yolov5n(pretrained=True, channels=3, classes=80, autoshape=True, _verbose=True, device=None):
    return _create("yolov5n", pretrained, channels, classes, autoshape, device)


def yolov5s(pretrained=True, channels=3, classes=80, autoshape=True, _verbose=True, device=None):
    return _create("yolov5s", pretrained, channels, classes, autoshape, device)


def yolov5m(pretrained=True, channels=3, classes=80, autoshape=True, _verbose=True, device=None):
    return _create("yolov5m", pretrained, channels, classes, autoshape, device)


def yolov5l(pretrained=True, channels=3, classes=80, autoshape=True, _verbose=True, device=None):
    return _create("yolov5l", pretrained, channels, classes, autoshape, device)


def yolov5x(pretrained=True, channels=3, classes=80, autoshape=True, _verbose=True, device=None):
    return _create("yolov5x", pretrained, channels, classes, autoshape, device)
