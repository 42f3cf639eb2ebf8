"""Training results: running means of named loss terms, results.csv rows by column name, results.png.

Columns are named, never positional: upstream's columns come first in upstream's order, any extra named term
(e.g. ``train/distill_kl``) or extra learning rate follows in first-seen order.
"""
from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import torch

from utils import atomic

UPSTREAM_COLUMNS = (
    "epoch", "train/box_loss", "train/obj_loss", "train/cls_loss", "metrics/precision", "metrics/recall",
    "metrics/mAP_0.5", "metrics/mAP_0.5:0.95", "val/box_loss", "val/obj_loss", "val/cls_loss",
    "x/lr0", "x/lr1", "x/lr2",
)
# upstream's 2x5 panel order; anything else is appended
PLOT_ORDER = (
    "train/box_loss", "train/obj_loss", "train/cls_loss", "metrics/precision", "metrics/recall",
    "val/box_loss", "val/obj_loss", "val/cls_loss", "metrics/mAP_0.5", "metrics/mAP_0.5:0.95",
)


def term_column(term: str, prefix: str = "train") -> str:
    """'task/box' -> 'train/box_loss'; 'distill/fgd_p4' -> 'train/distill_fgd_p4'."""
    group, _, name = term.partition("/")
    if group == "task":
        return f"{prefix}/{name}_loss"
    return f"{prefix}/{term.replace('/', '_')}"


def term_label(term: str) -> str:
    """Short console label: 'task/box' -> 'box_loss', 'distill/kl' -> 'distill_kl'."""
    return term_column(term).split("/", 1)[1]


class RunningMeans:
    """Running mean per named scalar term (e.g. loss terms over an epoch's batches)."""

    def __init__(self):
        self.sums: dict[str, float] = {}
        self.count = 0

    def update(self, terms: dict[str, torch.Tensor | float]) -> None:
        self.count += 1
        for k, v in terms.items():
            self.sums[k] = self.sums.get(k, 0.0) + float(v)

    @property
    def means(self) -> dict[str, float]:
        return {k: s / max(self.count, 1) for k, s in self.sums.items()}


def order_columns(keys) -> list[str]:
    keys = list(dict.fromkeys(keys))
    return [k for k in UPSTREAM_COLUMNS if k in keys] + [k for k in keys if k not in UPSTREAM_COLUMNS]


class ResultsCSV:
    """One row per epoch in ``results.csv`` (header on first write; an existing header is reused).

    Every write replaces the whole file atomically (utils.atomic), so a crash leaves the old table or the new one,
    never a torn row. Cells are '%20s' / '%20.5g' as upstream, so readers should strip column names.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def columns(self) -> list[str] | None:
        if not self.path.exists():
            return None
        with open(self.path, newline="") as f:
            header = next(csv.reader(f), None)
        return [h.strip() for h in header] if header else None

    def append(self, row: dict[str, float]) -> None:
        cols = self.columns()
        lines = self.path.read_text().splitlines(keepends=True) if cols else []
        if cols is None:
            cols = order_columns(row)
            lines = [",".join("%20s" % c for c in cols) + "\n"]
        values = [row.get(c, float("nan")) for c in cols]
        lines.append(",".join(_cell(c, v) for c, v in zip(cols, values)) + "\n")
        self._write(lines)

    def keep_until(self, epoch: int) -> int:
        """Drop the rows after ``epoch`` (and unreadable ones), as a resume from that epoch's checkpoint must;
        returns how many rows were dropped."""
        if not self.path.exists():
            return 0
        header, *rows = self.path.read_text().splitlines(keepends=True) or [""]
        n = len(header.split(","))
        kept = [r for r in rows if (e := _row_epoch(r, n)) is not None and e <= epoch]
        if len(kept) < len(rows):
            self._write([header, *kept])
        return len(rows) - len(kept)

    def _write(self, lines: list[str]) -> None:
        atomic.write_text(self.path, "".join(lines))

    def read(self) -> dict[str, np.ndarray]:
        return read_results(self.path)


def _row_epoch(line: str, n_columns: int) -> int | None:
    """The epoch of a results.csv row, or None for a torn or blank line (not ``n_columns`` cells, no newline)."""
    cells = line.rstrip("\n").split(",")
    try:
        complete = line.endswith("\n") and len(cells) == n_columns and all(c.strip() for c in cells)
        return int(cells[0]) if complete else None
    except ValueError:
        return None


def _cell(col: str, v) -> str:
    if col == "epoch":
        return "%20d" % int(v)
    return "%20.5g" % float(v)


def read_results(path: str | Path) -> dict[str, np.ndarray]:
    """Column name -> float array for a results.csv."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        return {}
    header = [h.strip() for h in rows[0]]
    data = np.array([[float(x) for x in r] for r in rows[1:] if r], dtype=np.float64).reshape(-1, len(header))
    return {h: data[:, i] for i, h in enumerate(header)}


def plot_results(file: str | Path, out: str | Path | None = None) -> Path:
    """results.png beside results.csv: one panel per column (except epoch), upstream's 10 first.

    Every ``results*.csv`` in the same folder is overlaid. Each panel shows markers plus a line, and a dotted
    gaussian-smoothed line (sigma 3) when there are enough points.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from scipy.ndimage import gaussian_filter1d

    file = Path(file)
    files = sorted(file.parent.glob("results*.csv")) or [file]
    tables = [(f, read_results(f)) for f in files]
    cols = [c for c in PLOT_ORDER if any(c in t for _, t in tables)]
    cols += [c for _, t in tables for c in t if c != "epoch" and c not in cols]
    cols = list(dict.fromkeys(cols))
    ncols = max(5, math.ceil(len(cols) / 2))
    fig = Figure(figsize=(ncols * 2.4, 6), tight_layout=True)
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, ncols).ravel()
    for ax, col in zip(axes, cols):
        for f, t in tables:
            if col not in t:
                continue
            x, y = t["epoch"], t[col]
            ax.plot(x, y, marker=".", label=f.stem, linewidth=2, markersize=8)
            if len(y) > 3 and np.isfinite(y).all():
                ax.plot(x, gaussian_filter1d(y, sigma=3), ":", label="smooth", linewidth=2)
        ax.set_title(col, fontsize=12)
    for ax in axes[len(cols):]:
        ax.axis("off")
    if len(cols):
        axes[0].legend()
    out = Path(out) if out else file.with_suffix(".png")
    fig.savefig(out, dpi=200)
    return out
