"""A tiny detector with the documented Model API (``.model`` layers with ``.f``/``.i``, ``.detect`` head with
``.f .in_channels .anchors (nl, na, 2) grid units .stride .nc .na .nl .no``), for distillation tests on CPU."""
from __future__ import annotations

import torch
from torch import nn


class ToyConv(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, index: int):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn = nn.BatchNorm2d(c_out)
        self.f, self.i = -1, index

    def forward(self, x):
        return nn.functional.silu(self.bn(self.conv(x)))


class ToyDetect(nn.Module):
    """Head over levels ``f``. With ``mutate`` it writes into its input list like YOLOv5's Detect (trap 1)."""

    def __init__(self, nc: int, anchors: torch.Tensor, in_channels: tuple[int, ...], stride: list[float],
                 f: list[int], mutate: bool = False):
        super().__init__()
        self.nc, self.no, self.nl, self.na = nc, nc + 5, anchors.shape[0], anchors.shape[1]
        self.register_buffer("anchors", anchors.clone().float())
        self.register_buffer("stride", torch.tensor(stride))
        self.in_channels, self.f, self.i, self.mutate = tuple(in_channels), list(f), len(f) + 10, mutate
        self.m = nn.ModuleList(nn.Conv2d(c, self.na * self.no, 1) for c in in_channels)

    def forward(self, x):
        out = x if self.mutate else [None] * self.nl
        for level in range(self.nl):
            b, _, h, w = x[level].shape
            y = self.m[level](x[level]).view(b, self.na, self.no, h, w).permute(0, 1, 3, 4, 2).contiguous()
            out[level] = y
        if self.training:
            return out
        return torch.cat([o.sigmoid().view(o.shape[0], -1, self.no) for o in out], 1), out


class ToyDetector(nn.Module):
    """3 -> width (s2) -> width (s4, P "3") -> 2*width (s8, P "4") -> Detect(f=[1, 2]), strides [4, 8]."""

    def __init__(self, width: int = 4, nc: int = 2, mutate: bool = False, anchors: torch.Tensor | None = None):
        super().__init__()
        if anchors is None:
            anchors = torch.tensor([[[1.0, 1.5], [2.0, 2.0]], [[1.0, 1.0], [2.5, 2.0]]])
        layers = [ToyConv(3, width, 2, 0), ToyConv(width, width, 2, 1), ToyConv(width, 2 * width, 2, 2)]
        head = ToyDetect(nc, anchors, (width, 2 * width), [4.0, 8.0], [1, 2], mutate)
        head.i = 3
        self.model = nn.Sequential(*layers, head)
        self.stride = head.stride.clone()
        self.nc = nc

    @property
    def detect(self) -> ToyDetect:
        return self.model[-1]

    def forward(self, x):
        outputs = []
        for layer in self.model[:-1]:
            x = layer(x)
            outputs.append(x)
        return self.detect([outputs[i] for i in self.detect.f])


def toy_targets() -> torch.Tensor:
    """(N, 6) [img, cls, x, y, w, h] normalised: two boxes in image 0, one in image 2, image 1 empty."""
    return torch.tensor([[0, 0, 0.30, 0.40, 0.20, 0.30],
                         [0, 1, 0.70, 0.25, 0.10, 0.10],
                         [2, 1, 0.50, 0.50, 0.50, 0.40]])
