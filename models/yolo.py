"""YOLOv5 model built from a yaml file or dict through an explicit name -> class registry (never `eval`)."""
from __future__ import annotations

import contextlib
import copy
import logging
import math
import re
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
import yaml

from models.common import (
    C3, SPP, SPPF, Bottleneck, BottleneckCSP, Concat, Conv, DWConv, Focus, fuse_conv_and_bn,
)

LOGGER = logging.getLogger(__name__)
CFG_DIR = Path(__file__).resolve().parent


class Detect(nn.Module):
    """Detection head: one 1x1 conv per level producing ``na * (nc + 5)`` channels.

    ``anchors`` is a buffer (nl, na, 2) in grid units (pixels / stride) once the model is built; ``stride`` is a
    plain tensor attribute (not in the state_dict, as upstream). ``f`` lists the layers feeding the head and
    ``in_channels`` their channels, so distillation code never hard-codes them.
    """

    export = False  # export mode returns only the decoded tensor

    def __init__(self, nc=80, anchors=(), ch=(), inplace=True):
        super().__init__()
        self.nc = nc
        self.no = nc + 5
        self.nl = len(anchors)
        self.na = len(anchors[0]) // 2
        self.in_channels = tuple(ch)
        self.inplace = inplace  # kept for upstream compatibility; decoding never writes into its inputs
        self.register_buffer("anchors", torch.tensor(anchors).float().view(self.nl, -1, 2))
        self.m = nn.ModuleList(nn.Conv2d(x, self.no * self.na, 1) for x in ch)
        self.stride = torch.ones(self.nl)
        self.dynamic = False
        self._grids: dict[int, tuple] = {}

    def forward(self, xs):
        """xs: list of nl (bs, C_i, H_i, W_i). Train: list of (bs, na, H_i, W_i, no) logits.
        Eval: ((bs, sum na*H_i*W_i, no) decoded [cx, cy, w, h, obj, cls...] in input pixels, raw list)."""
        raw = []
        for i in range(self.nl):
            bs, _, ny, nx = xs[i].shape
            raw.append(self.m[i](xs[i]).view(bs, self.na, self.no, ny, nx).permute(0, 1, 3, 4, 2).contiguous())
        if self.training:
            return raw
        decoded = torch.cat([self._decode(i, p) for i, p in enumerate(raw)], 1)
        return (decoded,) if self.export else (decoded, raw)

    def _decode(self, i: int, p: torch.Tensor) -> torch.Tensor:
        bs, _, ny, nx, _ = p.shape
        grid, anchor_grid = self._grid(i, nx, ny, p)
        xy, wh, conf = p.sigmoid().split((2, 2, self.nc + 1), 4)
        xy = (xy * 2 + grid) * self.stride[i]
        wh = (wh * 2) ** 2 * anchor_grid
        return torch.cat((xy, wh, conf), 4).view(bs, self.na * ny * nx, self.no)

    def _grid(self, i: int, nx: int, ny: int, p: torch.Tensor):
        key = (nx, ny, p.device, p.dtype)
        cached = self._grids.get(i)
        if self.dynamic or cached is None or cached[0] != key:
            y, x = torch.arange(ny, device=p.device, dtype=p.dtype), torch.arange(nx, device=p.device, dtype=p.dtype)
            yv, xv = torch.meshgrid(y, x, indexing="ij")
            grid = torch.stack((xv, yv), 2).expand(1, self.na, ny, nx, 2) - 0.5  # the -0.5 of 2*sig-0.5
            anchor_grid = (self.anchors[i] * self.stride[i]).view(1, self.na, 1, 1, 2).expand(1, self.na, ny, nx, 2)
            cached = (key, grid, anchor_grid.to(p.dtype))
            self._grids[i] = cached
        return cached[1], cached[2]


MODULES = {
    "Conv": Conv, "DWConv": DWConv, "Bottleneck": Bottleneck, "BottleneckCSP": BottleneckCSP, "C3": C3,
    "SPP": SPP, "SPPF": SPPF, "Focus": Focus, "Concat": Concat, "Detect": Detect,
    "nn.Upsample": nn.Upsample, "nn.BatchNorm2d": nn.BatchNorm2d, "nn.Identity": nn.Identity,
}
CHANNEL_MODULES = {Conv, DWConv, Bottleneck, BottleneckCSP, C3, SPP, SPPF, Focus}
REPEAT_ARG_MODULES = {BottleneckCSP, C3}  # take the repeat count as their 3rd argument
ACTIVATIONS = {
    "SiLU": nn.SiLU, "ReLU": nn.ReLU, "LeakyReLU": nn.LeakyReLU, "Hardswish": nn.Hardswish, "ReLU6": nn.ReLU6,
    "Mish": nn.Mish, "ELU": nn.ELU, "GELU": nn.GELU, "Sigmoid": nn.Sigmoid, "Identity": nn.Identity,
}


def parse_activation(spec: str) -> nn.Module:
    """'nn.LeakyReLU(0.1)' -> nn.LeakyReLU(0.1), from an allow-list; numeric arguments only."""
    match = re.fullmatch(r"\s*(?:nn\.)?(\w+)\s*\(([^()]*)\)\s*", str(spec))
    if not match or match.group(1) not in ACTIVATIONS:
        raise ValueError(f"unsupported activation {spec!r}; allowed: {sorted(ACTIVATIONS)}")
    args = [float(a) for a in match.group(2).split(",") if a.strip()]
    return ACTIVATIONS[match.group(1)](*args)


def make_divisible(x: float, divisor: int) -> int:
    return int(math.ceil(x / divisor) * divisor)


def _resolve_arg(a, names: dict):
    """yaml args may name 'nc', 'anchors' or 'None'; anything else stays a literal."""
    if isinstance(a, str) and a in names:
        return names[a]
    return a


def parse_model(d: dict, ch: list[int]):
    """Build the layers of a model dict. Returns (nn.Sequential, sorted save list)."""
    anchors, nc, gd, gw = d["anchors"], d["nc"], d["depth_multiple"], d["width_multiple"]
    ch_mul = d.get("channel_multiple", 8)
    na = (len(anchors[0]) // 2) if isinstance(anchors, list) else anchors
    no = na * (nc + 5)
    names = {"nc": nc, "anchors": anchors, "None": None, "True": True, "False": False}
    layers, save, c2 = [], [], ch[-1]
    LOGGER.info(f"\n{'':>3}{'from':>18}{'n':>3}{'params':>10}  {'module':<40}{'arguments':<30}")
    for i, (f, n, m_name, args) in enumerate(d["backbone"] + d["head"]):
        if m_name not in MODULES:
            raise ValueError(f"layer {i}: unknown module {m_name!r}; known: {sorted(MODULES)}")
        m = MODULES[m_name]
        args = [_resolve_arg(a, names) for a in args]
        n = n_ = max(round(n * gd), 1) if n > 1 else n
        if m in CHANNEL_MODULES:
            c1, c2 = ch[f], args[0]
            if c2 != no:
                c2 = make_divisible(c2 * gw, ch_mul)
            args = [c1, c2, *args[1:]]
            if m in REPEAT_ARG_MODULES:
                args.insert(2, n)
                n = 1
        elif m is nn.BatchNorm2d:
            args = [ch[f]]
        elif m is Concat:
            c2 = sum(ch[x] for x in f)
        elif m is Detect:
            args.append([ch[x] for x in f])
            if isinstance(args[1], int):  # anchors given as a count: placeholders until autoanchor runs
                args[1] = [list(range(args[1] * 2))] * len(f)
        else:
            c2 = ch[f]
        layer = nn.Sequential(*(m(*args) for _ in range(n))) if n > 1 else m(*args)
        layer.i, layer.f, layer.type = i, f, m_name
        layer.np = sum(x.numel() for x in layer.parameters())
        LOGGER.info(f"{i:>3}{str(f):>18}{n_:>3}{layer.np:10.0f}  {m_name:<40}{str(args):<30}")
        save.extend(x % i for x in ([f] if isinstance(f, int) else f) if x != -1)
        layers.append(layer)
        if i == 0:
            ch = []
        ch.append(c2)
    return nn.Sequential(*layers), sorted(set(save))


def load_cfg(cfg) -> dict:
    """A model dict from a dict, a yaml path, or a bare name such as 'yolov5s.yaml' found in models/."""
    if isinstance(cfg, dict):
        return copy.deepcopy(cfg)
    path = Path(cfg)
    if not path.exists() and (CFG_DIR / path.name).exists():
        path = CFG_DIR / path.name
    if not path.exists():
        raise FileNotFoundError(f"model yaml {cfg} not found (looked in the working directory and {CFG_DIR})")
    with open(path, encoding="utf-8", errors="ignore") as f:
        d = yaml.safe_load(f)
    if not isinstance(d, dict) or not {"backbone", "head", "depth_multiple", "width_multiple"} <= d.keys():
        raise ValueError(f"{path}: not a YOLOv5 model yaml (needs backbone, head, depth_multiple, width_multiple)")
    d["yaml_file"] = path.name
    return d


class Model(nn.Module):
    """YOLOv5 detection model: ``Model('yolov5s.yaml', ch=3, nc=80)``. See docs/design.md for the API."""

    def __init__(self, cfg="yolov5s.yaml", ch=3, nc=None, anchors=None):
        super().__init__()
        self.yaml = load_cfg(cfg)
        ch = self.yaml["ch"] = self.yaml.get("ch", ch)
        if nc and nc != self.yaml.get("nc"):
            LOGGER.info(f"Overriding model.yaml nc={self.yaml.get('nc')} with nc={nc}")
            self.yaml["nc"] = nc
        if anchors:
            self.yaml["anchors"] = round(anchors) if isinstance(anchors, float) else anchors
        self.model, self.save = parse_model(self.yaml, ch=[ch])
        self.names = {i: str(i) for i in range(self.yaml["nc"])}
        if "activation" in self.yaml:
            self._set_activation(parse_activation(self.yaml["activation"]))
        self._init_head(ch)
        self._init_layers()

    @property
    def detect(self) -> Detect:
        return self.model[-1]

    @property
    def nc(self) -> int:
        return self.detect.nc

    @property
    def stride(self) -> torch.Tensor:
        return self.detect.stride

    def _set_activation(self, act: nn.Module):
        for m in self.modules():
            if isinstance(m, Conv) and not isinstance(m.act, nn.Identity):
                m.act = act

    def _init_head(self, ch: int):
        """Strides from a 256x256 dry run, anchor order check, anchors to grid units, bias priors."""
        m = self.detect
        s = 256
        with torch.no_grad():
            was_training = self.training
            self.train()
            m.stride = torch.tensor([s / x.shape[-2] for x in self._forward_once(torch.zeros(1, ch, s, s))])
            self.train(was_training)
        check_anchor_order(m)
        m.anchors /= m.stride.view(-1, 1, 1)
        for conv, stride in zip(m.m, m.stride):
            b = conv.bias.view(m.na, -1)
            with torch.no_grad():
                b[:, 4] += math.log(8 / (640 / stride) ** 2)  # 8 objects per 640 image
                b[:, 5 : 5 + m.nc] += math.log(0.6 / (m.nc - 0.99999))

    def _init_layers(self):
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eps, m.momentum = 1e-3, 0.03
            elif isinstance(m, (nn.Hardswish, nn.LeakyReLU, nn.ReLU, nn.ReLU6, nn.SiLU)):
                m.inplace = True

    def forward(self, x, augment: bool = False):
        if augment:
            return self._forward_augment(x)
        return self._forward_once(x)

    def _forward_once(self, x):
        y = []
        for m in self.model:
            if m.f != -1:
                x = y[m.f] if isinstance(m.f, int) else [x if j == -1 else y[j] for j in m.f]
            x = m(x)
            y.append(x if m.i in self.save else None)
        return x

    def _forward_augment(self, x):
        """Test-time augmentation: scales (1, 0.83, 0.67) with flips (none, left-right, none)."""
        img_size = x.shape[-2:]
        gs = int(self.stride.max())
        outputs = []
        for scale, flip in zip((1, 0.83, 0.67), (None, 3, None)):
            xi = scale_img(x.flip(flip) if flip else x, scale, gs=gs)
            yi = self._forward_once(xi)[0]
            outputs.append(_descale_pred(yi, flip, scale, img_size))
        return torch.cat(_clip_augmented(outputs, self.detect.nl), 1), None

    def fuse(self):
        """Fold every Conv's BatchNorm into its conv (inference only)."""
        for m in self.model.modules():
            if isinstance(m, Conv) and hasattr(m, "bn"):
                m.conv = fuse_conv_and_bn(m.conv, m.bn)
                delattr(m, "bn")
        return self

    def info(self, imgsz: int = 640) -> str:
        """'YOLOv5s summary: 214 layers, 7235389 parameters, 7235389 gradients, 16.4 GFLOPs'."""
        n_p = sum(p.numel() for p in self.parameters())
        n_g = sum(p.numel() for p in self.parameters() if p.requires_grad)
        name = Path(self.yaml.get("yaml_file", "")).stem.replace("yolov5", "YOLOv5") or "Model"
        flops = ""
        with contextlib.suppress(Exception):
            flops = f", {gflops(self, imgsz):.1f} GFLOPs"
        return f"{name} summary: {len(list(self.modules()))} layers, {n_p} parameters, {n_g} gradients{flops}"

    def _apply(self, fn):
        # stride and the grid caches are plain attributes: move/cast them with the model
        self = super()._apply(fn)
        m = self.detect
        m.stride = fn(m.stride)
        m._grids = {}
        return self


def gflops(model: nn.Module, imgsz: int = 640) -> float:
    """GFLOPs of one forward pass at imgsz x imgsz, counted by torch.utils.flop_counter on a small input and
    scaled by area (conv FLOPs scale exactly with it)."""
    from torch.utils.flop_counter import FlopCounterMode

    p = next(model.parameters())
    s = 64
    x = torch.zeros(1, model.yaml.get("ch", 3), s, s, device=p.device, dtype=p.dtype)
    was_training = model.training
    model.eval()
    try:
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(x)
    finally:
        model.train(was_training)
    return counter.get_total_flops() / 1e9 * (imgsz / s) ** 2


def check_anchor_order(m: Detect):
    """Flip the anchor order if the mean anchor area does not grow with the stride (in place on the buffer)."""
    a = m.anchors.prod(-1).mean(-1).view(-1)
    da, ds = a[-1] - a[0], m.stride[-1] - m.stride[0]
    if da and (da.sign() != ds.sign()):
        LOGGER.info("AutoAnchor: reversing anchor order")
        with torch.no_grad():
            m.anchors.copy_(m.anchors.flip(0))


def scale_img(img: torch.Tensor, ratio: float = 1.0, same_shape: bool = False, gs: int = 32) -> torch.Tensor:
    """Resize a (bs, 3, h, w) batch by ``ratio`` and pad to a multiple of ``gs`` with 0.447 (ImageNet mean)."""
    if ratio == 1.0:
        return img
    h, w = img.shape[2:]
    s = (int(h * ratio), int(w * ratio))
    img = F.interpolate(img, size=s, mode="bilinear", align_corners=False)
    if not same_shape:
        h, w = (math.ceil(x * ratio / gs) * gs for x in (h, w))
    return F.pad(img, [0, w - s[1], 0, h - s[0]], value=0.447)


def _descale_pred(p: torch.Tensor, flip, scale: float, img_size) -> torch.Tensor:
    xy = p[..., 0:2] / scale
    wh = p[..., 2:4] / scale
    if flip == 2:
        xy = torch.stack((xy[..., 0], img_size[0] - xy[..., 1]), -1)
    elif flip == 3:
        xy = torch.stack((img_size[1] - xy[..., 0], xy[..., 1]), -1)
    return torch.cat((xy, wh, p[..., 4:]), -1)


def _clip_augmented(y: list, nl: int) -> list:
    """Drop the large-object tail of the first TTA output and the small-object head of the last."""
    g = sum(4**x for x in range(nl))
    y = list(y)
    i = (y[0].shape[1] // g) * 1  # 4**0
    y[0] = y[0][:, :-i]
    i = (y[-1].shape[1] // g) * 4 ** (nl - 1)
    y[-1] = y[-1][:, i:]
    return y
