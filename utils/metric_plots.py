"""Evaluation figures: PR curve, metric-vs-confidence curves (F1, P, R) and the confusion matrix.

Inputs are plain numpy arrays produced by ``utils.metrics`` (which never imports this module, so metrics stays
matplotlib-free); every ``plot_*`` function writes one PNG and returns its path.
"""
from __future__ import annotations

import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from utils import metrics

LOGGER = logging.getLogger(__name__)


def _save(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=250)
    plt.close(fig)
    return path


def plot_pr_curve(px: np.ndarray, py: list, ap: np.ndarray, path, names: dict) -> Path:
    """Per-class precision vs recall at IoU 0.5 plus a thick mean curve.

    px: (1000,) recall grid; py: list of (1000,) precision curves (one per class with predictions);
    ap: (nc, T) AP table (column 0 = AP@0.5); names: {row index: class name}.
    """
    fig, ax = plt.subplots(1, 1, figsize=(9, 6), tight_layout=True)
    py = np.stack(py, axis=1) if len(py) else np.zeros((len(px), 0))
    legend = 0 < len(names) < 21
    for i, y in enumerate(py.T):
        label = f"{names.get(i, i)} {ap[i, 0]:.3f}" if legend else None
        ax.plot(px, y, linewidth=1, label=label)
    if py.shape[1]:
        ax.plot(px, py.mean(1), linewidth=3, color="blue", label=f"all classes {ap[:, 0].mean():.3f} mAP@0.5")
    ax.set(xlabel="Recall", ylabel="Precision", xlim=(0, 1), ylim=(0, 1), title="Precision-Recall Curve")
    ax.legend(bbox_to_anchor=(1.04, 1), loc="upper left")
    return _save(fig, path)


def plot_mc_curve(px: np.ndarray, py: np.ndarray, path, names: dict, xlabel="Confidence", ylabel="Metric") -> Path:
    """Metric vs confidence per class (py: (nc, 1000) over px) plus the 5%-smoothed class mean and its maximum."""
    fig, ax = plt.subplots(1, 1, figsize=(9, 6), tight_layout=True)
    legend = 0 < len(names) < 21
    for i, y in enumerate(py):
        ax.plot(px, y, linewidth=1, label=f"{names.get(i, i)}" if legend else None)
    if len(py):
        y = metrics.smooth(py.mean(0), 0.05)
        i = y.argmax()
        ax.plot(px, y, linewidth=3, color="blue", label=f"all classes {y[i]:.2f} at {px[i]:.3f}")
    ax.set(xlabel=xlabel, ylabel=ylabel, xlim=(0, 1), ylim=(0, 1), title=f"{ylabel}-Confidence Curve")
    ax.legend(bbox_to_anchor=(1.04, 1), loc="upper left")
    return _save(fig, path)


def plot_confusion_matrix(matrix: np.ndarray, path, names=(), normalize: bool = True) -> Path:
    """(nc+1, nc+1) [predicted, true] matrix, column-normalised, Blues, cells annotated when nc < 30."""
    nc = matrix.shape[0] - 1
    m = matrix / ((matrix.sum(0).reshape(1, -1) + 1e-9) if normalize else 1)
    m[m < 0.005] = np.nan  # leave near-empty cells blank
    names = list(names.values()) if isinstance(names, dict) else list(names)
    ticks = names + ["background"] if 0 < nc < 99 and len(names) == nc else None
    fig, ax = plt.subplots(1, 1, figsize=(12, 9), tight_layout=True)
    im = ax.imshow(m, cmap="Blues", vmin=0.0, vmax=1.0 if normalize else None)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    if nc < 30:
        for (i, j), v in np.ndenumerate(m):
            if not np.isnan(v):
                ax.text(j, i, f"{v:.2f}" if normalize else f"{v:.0f}", ha="center", va="center",
                        fontsize=8, color="white" if v > 0.5 * np.nanmax(m) else "black")
    if ticks:
        ax.set_xticks(range(nc + 1), ticks, rotation=90, fontsize=8)
        ax.set_yticks(range(nc + 1), ticks, fontsize=8)
    ax.set(xlabel="True", ylabel="Predicted", title="Confusion Matrix")
    return _save(fig, path)


def plot_ap_curves(stats: metrics.APStats, save_dir, names: dict, prefix: str = "") -> list[Path]:
    """PR_curve.png, F1_curve.png, P_curve.png and R_curve.png under ``save_dir`` from ``metrics.ap_per_class``
    output; names: {class id: name}, looked up for the classes present."""
    c = stats.curves
    present = {i: names.get(int(k), str(int(k))) for i, k in enumerate(stats.classes)}
    save_dir = Path(save_dir)
    return [plot_pr_curve(c.px, c.pr, stats.ap, save_dir / f"{prefix}PR_curve.png", present),
            plot_mc_curve(c.px, c.f1, save_dir / f"{prefix}F1_curve.png", present, ylabel="F1"),
            plot_mc_curve(c.px, c.p, save_dir / f"{prefix}P_curve.png", present, ylabel="Precision"),
            plot_mc_curve(c.px, c.r, save_dir / f"{prefix}R_curve.png", present, ylabel="Recall")]
