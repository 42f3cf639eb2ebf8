"""--evolve [N]: upstream's genetic search over hyperparameters (and, for train_kd.py, the KD weights and options).

Each generation mutates one of the best rows so far (the top 5 by fitness, one drawn with weights fitness - min),
trains with the mutated values, and appends a row to ``evolve.csv``: the 7 validation results, then one column per
gene. After each generation ``hyp_evolve.yaml`` (the best row's hyperparameters, a valid ``--hyp`` file) and
``evolve.png`` are rewritten. Rerunning on the same folder (``--resume <evolve dir or evolve.csv>``, or the same
``--name`` with ``--exist-ok``) continues from the rows already there until there are N.

Mutation (upstream's): every gene with a non-zero scale changes, with probability 0.8, by a factor
``1 + scale * randn * r * 0.2`` (one ``r ~ U(0, 1)`` per generation), clipped to [0.3, 3]; the values are then
clipped to the gene's limits and rounded to 5 significant digits. Unlike upstream (seeded from the clock), the draws come
from ``numpy.random.default_rng((seed, generation))``: a search is reproducible and a resumed one continues
with the draws it would have made.
"""
from __future__ import annotations

import copy
import csv
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

import numpy as np
import yaml

from utils import dist, metrics
from utils.paths import increment_path

LOGGER = logging.getLogger("evolve")
RESULT_COLUMNS = ("metrics/precision", "metrics/recall", "metrics/mAP_0.5", "metrics/mAP_0.5:0.95",
                  "val/box_loss", "val/obj_loss", "val/cls_loss")
PARENTS, MUTATION_P, SIGMA, FACTOR_LIMITS = 5, 0.8, 0.2, (0.3, 3.0)

# hyp key: (mutation scale, lower limit, upper limit), upstream's; a scale of 0 keeps the value
HYP_META = {
    "lr0": (1, 1e-5, 1e-1), "lrf": (1, 0.01, 1.0), "momentum": (0.3, 0.6, 0.98), "weight_decay": (1, 0.0, 0.001),
    "warmup_epochs": (1, 0.0, 5.0), "warmup_momentum": (1, 0.0, 0.95), "warmup_bias_lr": (1, 0.0, 0.2),
    "box": (1, 0.02, 0.2), "cls": (1, 0.2, 4.0), "cls_pw": (1, 0.5, 2.0), "obj": (1, 0.2, 4.0),
    "obj_pw": (1, 0.5, 2.0), "iou_t": (0, 0.1, 0.7), "anchor_t": (1, 2.0, 8.0), "anchors": (2, 2.0, 10.0),
    "fl_gamma": (0, 0.0, 2.0), "hsv_h": (1, 0.0, 0.1), "hsv_s": (1, 0.0, 0.9), "hsv_v": (1, 0.0, 0.9),
    "degrees": (1, 0.0, 45.0), "translate": (1, 0.0, 0.9), "scale": (1, 0.0, 0.9), "shear": (1, 0.0, 10.0),
    "perspective": (0, 0.0, 0.001), "flipud": (1, 0.0, 1.0), "fliplr": (0, 0.0, 1.0), "mosaic": (1, 0.0, 1.0),
    "mixup": (1, 0.0, 1.0), "copy_paste": (1, 0.0, 1.0),
}


@dataclass(frozen=True)
class Gene:
    """One evolved value: its name (an evolve.csv column), starting value, mutation scale and limits."""

    name: str
    value: float
    scale: float
    low: float
    high: float


class GeneSet(Protocol):
    """Genes beyond the hyperparameters (train_kd.py's KD weights and options): read from and written to the
    options of a run."""

    def genes(self, opt) -> list[Gene]: ...

    def apply(self, opt, values: dict[str, float]) -> None: ...

    def flags(self, values: dict[str, float]) -> str: ...


def hyp_genes(hyp: dict) -> list[Gene]:
    """The hyperparameters of ``hyp`` that upstream evolves, in ``hyp``'s order (other keys stay as they are)."""
    return [Gene(k, float(v), *HYP_META[k]) for k, v in hyp.items() if k in HYP_META and v is not None]


def mutate(parent: np.ndarray, genes: list[Gene], rng: np.random.Generator) -> np.ndarray:
    """Mutated values of ``parent`` (one per gene), clipped to the genes' limits and rounded (``clip``)."""
    scales = np.array([g.scale for g in genes], dtype=np.float64)
    factors = np.ones(len(genes))
    while scales.any() and (factors == 1).all():  # until something changes
        mutating = rng.random(len(genes)) < MUTATION_P
        factors = (scales * mutating * rng.standard_normal(len(genes)) * rng.random() * SIGMA + 1).clip(*FACTOR_LIMITS)
    return clip(parent * factors, genes)


def clip(values: np.ndarray, genes: list[Gene]) -> np.ndarray:
    """Clipped to the limits, rounded to 5 significant digits (what evolve.csv's '%.5g' cells hold, so a resumed
    search reads back exactly these values; upstream's 5 decimals would zero KD coefficients such as 5e-6)."""
    low, high = np.array([g.low for g in genes]), np.array([g.high for g in genes])
    return np.array([float("%.5g" % v) for v in np.clip(values, low, high)])


def select_parent(results: np.ndarray, values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One of the top ``PARENTS`` rows by fitness, drawn with weights fitness - min fitness (+1e-6)."""
    fit = metrics.fitness(results)
    top = np.argsort(-fit)[:PARENTS]
    weights = fit[top] - fit[top].min() + 1e-6
    return values[top[rng.choice(len(top), p=weights / weights.sum())]]


class EvolveCSV:
    """``evolve.csv``: a header of RESULT_COLUMNS + gene names ('%20s'), rows of '%20.5g' cells, as upstream."""

    def __init__(self, path: Path, names: list[str]):
        self.path, self.names = Path(path), list(names)

    def read(self) -> tuple[np.ndarray, np.ndarray]:
        """(results (n, 7), gene values (n, genes)); empty when the file does not exist."""
        if not self.path.exists():
            return np.zeros((0, len(RESULT_COLUMNS))), np.zeros((0, len(self.names)))
        with open(self.path, newline="") as f:
            rows = [[c.strip() for c in r] for r in csv.reader(f) if r]
        expected = [*RESULT_COLUMNS, *self.names]
        if rows[0] != expected:
            raise ValueError(f"{self.path} has columns {rows[0]}, this search has {expected}: evolve the same "
                             f"genes (same --hyp keys, --kd methods) to continue it, or start a new folder")
        data = np.array([[float(c) for c in r] for r in rows[1:]], dtype=np.float64).reshape(-1, len(expected))
        return data[:, :len(RESULT_COLUMNS)], data[:, len(RESULT_COLUMNS):]

    def append(self, results, values) -> None:
        new = not self.path.exists()
        with open(self.path, "a") as f:
            if new:
                f.write(",".join("%20s" % c for c in (*RESULT_COLUMNS, *self.names)) + "\n")
            f.write(",".join("%20.5g" % float(x) for x in (*results, *values)) + "\n")


def evolve_dir(opt) -> Path:
    """The search folder: --resume's (a folder or its evolve.csv; a bare --resume: the newest evolve.csv under the
    project), else a new runs/evolve/exp{N}."""
    project = Path(opt.project)
    if project.name == "train" and project.parent.name == "runs":  # train.py's default: upstream's runs/evolve
        project = project.parent / "evolve"
    if opt.resume is True or str(opt.resume) == "True":
        found = sorted(project.glob("*/evolve.csv"), key=lambda p: p.stat().st_mtime)
        if not found:
            raise FileNotFoundError(f"--evolve --resume: no */evolve.csv under {project} to continue from")
        return found[-1].parent
    if opt.resume:
        path = Path(opt.resume)
        path = path.parent if path.suffix == ".csv" else path
        if not (path / "evolve.csv").is_file():
            raise FileNotFoundError(f"--evolve --resume {opt.resume}: no evolve.csv there to continue from")
        return path
    return increment_path(project / opt.name, exist_ok=opt.exist_ok, mkdir=True)


def run(opt, train_fn: Callable, load_hyp: Callable[[object], dict], extra: GeneSet | None = None):
    """Evolve for ``opt.evolve`` generations in all (continuing an existing evolve.csv); returns ``opt`` with
    ``save_dir`` the search folder and ``results`` the best row's. ``train_fn(opt)`` trains one run and returns
    its options with ``results`` (train.main)."""
    if dist.get_world_size() > 1:
        raise ValueError("--evolve is not compatible with DDP (run it on one process)")
    save_dir, hyp = evolve_dir(opt), load_hyp(opt.hyp)
    genes = hyp_genes(hyp) + (extra.genes(opt) if extra is not None else [])
    table = EvolveCSV(save_dir / "evolve.csv", [g.name for g in genes])
    results, values = table.read()
    LOGGER.info(f"evolve: {len(genes)} genes, generation {len(results)} of {opt.evolve}, in {save_dir}")
    for generation in range(len(results), int(opt.evolve)):
        rng = np.random.default_rng((int(opt.seed), generation))
        start = np.array([g.value for g in genes]) if not len(results) else select_parent(results, values, rng)
        chosen = clip(start, genes) if not len(results) else mutate(start, genes, rng)
        named = dict(zip(table.names, chosen.tolist()))
        out = train_fn(generation_options(opt, hyp, named, save_dir, generation, extra))
        shutil.rmtree(Path(out.save_dir) / "weights", ignore_errors=True)  # the search keeps values, not weights
        table.append(list(out.results), chosen)
        results, values = table.read()
        write_best(save_dir, hyp, results, values, table.names, extra)
    opt.save_dir = str(save_dir)
    opt.results = tuple(results[int(np.argmax(metrics.fitness(results)))]) if len(results) else None
    LOGGER.info(f"evolve: {len(results)} generations in {save_dir / 'evolve.csv'}; train with the best: "
                f"--hyp {save_dir / 'hyp_evolve.yaml'} (and the flags in its header, for train_kd.py)")
    return opt


def generation_options(opt, hyp: dict, named: dict, save_dir: Path, generation: int, extra: GeneSet | None):
    """One generation's run: the mutated hyperparameters (and extra genes), final-epoch validation and checkpoint
    only, no plots (upstream's), in <search folder>/gen<N>."""
    gen = copy.deepcopy(opt)
    gen.hyp = {**hyp, **{k: v for k, v in named.items() if k in hyp}}
    gen.evolve, gen.resume, gen.noval, gen.nosave, gen.noplots = None, False, True, True, True
    gen.project, gen.name, gen.exist_ok = str(save_dir), f"gen{generation}", True
    if extra is not None:
        extra.apply(gen, named)
    return gen


def write_best(save_dir: Path, hyp: dict, results: np.ndarray, values: np.ndarray, names: list[str],
               extra: GeneSet | None) -> None:
    """hyp_evolve.yaml (the best generation's hyperparameters, plus its extra genes as flags in a comment) and
    evolve.png."""
    fit = metrics.fitness(results)
    best = int(np.argmax(fit))
    named = dict(zip(names, values[best].tolist()))
    lines = ["# YOLOv5 hyperparameter evolution results", f"# Best generation: {best}",
             f"# Last generation: {len(results) - 1}", "# " + ", ".join(RESULT_COLUMNS),
             "# " + ", ".join("%.5g" % x for x in results[best])]
    if extra is not None:
        lines.append(f"# with: {extra.flags(named)}")
    best_hyp = {**hyp, **{k: v for k, v in named.items() if k in hyp}}
    text = "\n".join(lines) + "\n\n" + yaml.safe_dump(best_hyp, sort_keys=False)
    (save_dir / "hyp_evolve.yaml").write_text(text)
    try:
        from utils import plots
    except ImportError:
        return
    plots.plot_evolve(dict(zip(names, values.T)), fit, save_dir / "evolve.png")
