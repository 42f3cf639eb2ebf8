"""Plots of images and labels: the train/val batch mosaic, labels.jpg, a shared palette and box drawer.

Figures are built with matplotlib's object API (``Figure`` + Agg canvas), so importing this module never
changes the global matplotlib backend.
"""
from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import torch

CONF_THRES = 0.25  # prediction rows (with a conf column) are drawn only above this


class Colors:
    """A fixed 20-colour palette (matplotlib's tab20, strong shades first); ``colors(i, bgr=False)``."""

    HEX = ("1f77b4", "ff7f0e", "2ca02c", "d62728", "9467bd", "8c564b", "e377c2", "7f7f7f", "bcbd22", "17becf",
           "aec7e8", "ffbb78", "98df8a", "ff9896", "c5b0d5", "c49c94", "f7b6d2", "c7c7c7", "dbdb8d", "9edae5")

    def __init__(self):
        self.palette = [tuple(int(h[i:i + 2], 16) for i in (0, 2, 4)) for h in self.HEX]
        self.n = len(self.palette)

    def __call__(self, i: int, bgr: bool = False) -> tuple[int, int, int]:
        c = self.palette[int(i) % self.n]
        return c[::-1] if bgr else c


colors = Colors()


def draw_box(img: np.ndarray, xyxy, label: str = "", color=(128, 128, 128), line_width: int | None = None,
             txt_color=(255, 255, 255), font_scale: float | None = None) -> np.ndarray:
    """Draw one xyxy pixel box and its label (filled tag above the box, or inside at the top edge) on an
    (H, W, 3) uint8 image in place; ``color`` is in the image's channel order. Line width defaults to
    0.3% of the image size, the font scale to line_width / 3. Returns the image."""
    lw = line_width or max(round(sum(img.shape[:2]) / 2 * 0.003), 2)
    p1, p2 = (int(xyxy[0]), int(xyxy[1])), (int(xyxy[2]), int(xyxy[3]))
    cv2.rectangle(img, p1, p2, color, thickness=lw, lineType=cv2.LINE_AA)
    if label:
        scale = font_scale or lw / 3
        tf = max(round(scale * 1.5), 1)
        tw, th = cv2.getTextSize(label, 0, fontScale=scale, thickness=tf)[0]
        outside = p1[1] - th - 3 >= 0
        q2 = p1[0] + tw, p1[1] - th - 3 if outside else p1[1] + th + 3
        cv2.rectangle(img, p1, q2, color, -1, cv2.LINE_AA)
        org = (p1[0], p1[1] - 2 if outside else p1[1] + th + 2)
        cv2.putText(img, label, org, 0, scale, txt_color, thickness=tf, lineType=cv2.LINE_AA)
    return img


def _to_numpy(x):
    return x.detach().cpu().float().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def plot_images(images, targets, paths=None, fname="images.jpg", names=None, max_size=1920, max_subplots=16):
    """Save a grid of up to ``max_subplots`` images with their boxes to ``fname``; returns the RGB mosaic.

    ``images``: (B, 3, H, W) RGB, uint8 or float 0-1 (tensor or array). ``targets``: (N, 6 or 7) rows
    ``[img_idx, cls, x, y, w, h(, conf)]``, xywh normalised (all <= 1.01) or in pixels of the (H, W) input.
    With a conf column only rows with conf > 0.25 are drawn, labelled ``name conf``.
    """
    images, targets = _to_numpy(images), _to_numpy(targets)
    targets = targets.reshape(-1, targets.shape[-1] if targets.size else 6)
    if images.max(initial=0) <= 1:
        images = images * 255
    bs, _, h, w = images.shape
    bs = min(bs, max_subplots)
    ns = math.ceil(bs**0.5)  # grid side
    mosaic = np.full((ns * h, ns * w, 3), 255, np.uint8)
    for i in range(bs):
        x, y = w * (i % ns), h * (i // ns)
        mosaic[y:y + h, x:x + w] = images[i].transpose(1, 2, 0).clip(0, 255).astype(np.uint8)
    scale = min(1.0, max_size / ns / max(h, w))
    if scale < 1:
        h, w = math.ceil(scale * h), math.ceil(scale * w)
        mosaic = cv2.resize(mosaic, (ns * w, ns * h))
    lw = max(round(min(h, w) / 160), 1)  # thin lines and small tags: a batch grid is dense
    for i in range(bs):
        x, y = w * (i % ns), h * (i // ns)
        cv2.rectangle(mosaic, (x, y), (x + w, y + h), (255, 255, 255), 2)
        if paths is not None:
            cv2.putText(mosaic, Path(paths[i]).name[:40], (x + 5, y + 15), 0, 0.4, (220, 220, 220),
                        thickness=1, lineType=cv2.LINE_AA)
        _draw_targets(mosaic, targets[targets[:, 0] == i], (x, y), (h, w), scale, names, lw)
    Path(fname).parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(fname), cv2.cvtColor(mosaic, cv2.COLOR_RGB2BGR))
    return mosaic


def _draw_targets(mosaic, t, offset, hw, scale, names, lw):
    if not len(t):
        return
    has_conf = t.shape[1] > 6
    if has_conf:
        t = t[t[:, 6] > CONF_THRES]
    xywh = t[:, 2:6].astype(np.float64).copy()
    if xywh.max(initial=0) <= 1.01:  # normalised -> pixels of the (scaled) tile
        xywh[:, [0, 2]] *= hw[1]
        xywh[:, [1, 3]] *= hw[0]
    elif scale < 1:
        xywh *= scale
    xyxy = np.stack([xywh[:, 0] - xywh[:, 2] / 2, xywh[:, 1] - xywh[:, 3] / 2,
                     xywh[:, 0] + xywh[:, 2] / 2, xywh[:, 1] + xywh[:, 3] / 2], 1)
    xyxy += [offset[0], offset[1], offset[0], offset[1]]
    for j, box in enumerate(xyxy):
        c = int(t[j, 1])
        label = _name(names, c)
        if has_conf:
            label = f"{label} {t[j, 6]:.1f}"
        draw_box(mosaic, box, label, colors(c), lw, font_scale=0.35)


def _name(names, c: int) -> str:
    if isinstance(names, dict):
        return str(names.get(c, c))
    return str(names[c]) if names is not None and 0 <= c < len(names) else str(c)


def plot_labels(labels, names, save_dir) -> Path:
    """Write ``save_dir/labels.jpg``: class histogram, the first 1000 boxes centred on a 2000x2000 canvas,
    x-y and width-height 2-D histograms. ``labels``: (n, 5) ``cls x y w h`` normalised (array or tensor,
    e.g. ``np.concatenate(dataset.labels)``); ``names``: dict or list of class names."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    labels = _to_numpy(labels).reshape(-1, 5)
    names = dict(enumerate(names)) if isinstance(names, (list, tuple)) else dict(names or {})
    nc = max(len(names), int(labels[:, 0].max()) + 1 if len(labels) else 1)
    fig = Figure(figsize=(8, 8), tight_layout=True)
    FigureCanvasAgg(fig)
    ax = fig.subplots(2, 2).ravel()
    counts = np.bincount(labels[:, 0].astype(int), minlength=nc)
    ax[0].bar(range(nc), counts, color=[np.array(colors(i)) / 255 for i in range(nc)])
    ax[0].set_ylabel("instances")
    if nc < 30:
        ax[0].set_xticks(range(nc), [str(names.get(i, i)) for i in range(nc)], rotation=90, fontsize=8)
    ax[1].imshow(_box_layout(labels[:1000]))
    ax[1].axis("off")
    for a, (i, j, xl, yl) in zip(ax[2:], [(1, 2, "x", "y"), (3, 4, "width", "height")]):
        a.hist2d(labels[:, i], labels[:, j], bins=50, range=[[0, 1], [0, 1]], cmap="Blues")
        a.set_xlabel(xl)
        a.set_ylabel(yl)
    save_dir = Path(save_dir)
    save_dir.mkdir(parents=True, exist_ok=True)
    fig.savefig(save_dir / "labels.jpg", dpi=200)
    return save_dir / "labels.jpg"


def _box_layout(labels: np.ndarray, size: int = 2000) -> np.ndarray:
    canvas = np.full((size, size, 3), 255, np.uint8)
    for c, _, _, w, h in labels:
        half = np.array([w, h]) * size / 2
        p1 = tuple(int(v) for v in size / 2 - half)
        p2 = tuple(int(v) for v in size / 2 + half)
        cv2.rectangle(canvas, p1, p2, colors(int(c)), 3)
    return canvas


def plot_evolve(genes: dict[str, np.ndarray], fitness: np.ndarray, out) -> Path:
    """evolve.png: one panel per gene, its values (x) against fitness (y) over the generations, coloured by
    fitness, the best generation marked with a large '+' and its value in the title."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fitness = np.asarray(fitness, dtype=np.float64)
    best = int(np.argmax(fitness))
    n = max(len(genes), 1)
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(cols * 2.5, rows * 2.5), tight_layout=True)
    FigureCanvasAgg(fig)
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for ax, (name, values) in zip(axes, genes.items()):
        ax.scatter(values, fitness, c=fitness, cmap="viridis", s=12, alpha=0.8, edgecolors="none")
        ax.plot(values[best], fitness[best], "k+", markersize=15)
        ax.set_title(f"{name} = {values[best]:.3g}", fontdict={"size": 9})
        ax.tick_params(labelsize=6)
    for ax in axes[len(genes):]:
        ax.axis("off")
    out = Path(out)
    fig.savefig(out, dpi=150)
    return out
