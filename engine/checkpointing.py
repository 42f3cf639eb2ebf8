"""Checkpoints of a run: what last.pt / best.pt / epoch{N}.pt hold, resuming from one, and the final strip.

A training checkpoint: epoch, best_fitness, model and EMA records (models.weights.model_record, FP32: a resume
continues from the exact weights), EMA update count, optimizer state, the run's options, a date, the step's own
state under ``step.checkpoint_key``, and ``loop``: the loop's own state (last optimiser step, accumulation, the
early-stopping counter, the last validation, the GradScaler, every random generator) so that a resumed run
continues exactly as the uninterrupted one (CPU, 0 workers: bit-identical; docs/resume.md).

Crash consistency. Every file is written atomically (utils.atomic), and an epoch's files are written in the order
results.csv row, best.pt, epoch{N}.pt, last.pt: last.pt is the commit point. A run that dies at any moment resumes
from the last.pt it left, and ``restore_loop`` removes the leftover temporary files and the results.csv rows the
checkpoint does not cover. The final strip rewrites best.pt before last.pt, so a last.pt with an optimizer still
means "not finished": the resumed run strips again (stripping is idempotent).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from engine.state import Trainer
from engine.step import Step
from models import weights as model_weights
from utils import atomic, checkpoint, dist, results, seed
from utils.ema import ModelEMA
from utils.metrics import ValResults

LOGGER = logging.getLogger("train")


@dataclass(frozen=True)
class Resumed:
    """Where a resumed run restarts: its first epoch, the total epochs and the best fitness so far."""

    start_epoch: int
    epochs: int
    best_fitness: float


def save_run(trainer: Trainer, epoch: int, best: bool) -> None:
    """best.pt when this epoch's fitness is the best, epoch{N}.pt every save_period, then last.pt (the commit)."""
    ckpt = {
        "epoch": epoch,
        "best_fitness": float(trainer.progress.best_fitness),
        "model": model_weights.model_record(dist.de_parallel(trainer.model), half=False),
        "ema": model_weights.model_record(trainer.ema.ema, half=False),
        "updates": trainer.ema.updates,
        "optimizer": trainer.optimizer.state_dict(),
        "opt": trainer.options_record,
        "git": {},
        "date": datetime.now().isoformat(),
        "loop": loop_state(trainer),
    }
    if trainer.step.checkpoint_key:
        ckpt[trainer.step.checkpoint_key] = trainer.step.state_dict()
    weights_dir, period = trainer.weights_dir, trainer.options.save_period
    if best:
        checkpoint.save_checkpoint(ckpt, weights_dir / "best.pt")
    if period > 0 and epoch >= 0 and epoch % period == 0:
        checkpoint.save_checkpoint(ckpt, weights_dir / f"epoch{epoch}.pt")
    checkpoint.save_checkpoint(ckpt, weights_dir / "last.pt")
    trainer.callbacks.run("on_model_save", weights_dir / "last.pt", epoch, best)


def _generators(trainer: Trainer) -> dict:
    """The run's own random generators: multi-scale sizes, augmentation, the training loader's shuffle."""
    named = {"multi_scale": trainer.rng, "augment": getattr(trainer.dataset, "rng", None),
             "shuffle": getattr(trainer.train_loader, "generator", None)}
    return {name: g for name, g in named.items() if g is not None}


def loop_state(trainer: Trainer) -> dict:
    """What the loop needs beyond weights and optimizer to continue exactly (plain data)."""
    progress = trainer.progress
    return {
        "last_opt_step": progress.last_opt_step,
        "accumulate": progress.accumulate,
        "early_stop": dict(progress.early_stop),
        "results": [float(x) for x in progress.results],
        "class_maps": None if progress.class_maps is None else [float(x) for x in progress.class_maps],
        "scaler": trainer.scaler.state_dict() if trainer.scaler.is_enabled() else None,
        "rng": seed.rng_state(_generators(trainer)),
    }


def restore_loop(trainer: Trainer, ckpt: dict, source: str) -> None:
    """The rest of a resume, once the run is built: clear what a dead run left (temporary files, results.csv rows
    after the checkpoint's epoch), then restore the loop's state and random generators (``loop_state``).

    Older checkpoints without ``loop`` resume as before (fresh generators). Under DDP the generators are not
    restored (the checkpoint holds rank 0's): each rank keeps its seeded ones."""
    if trainer.main:
        for folder in (trainer.weights_dir, trainer.save_dir):
            for f in atomic.remove_temp_files(folder):
                LOGGER.info(f"Removed {f}, the temporary file of a write that did not finish")
        dropped = results.ResultsCSV(trainer.save_dir / "results.csv").keep_until(int(ckpt["epoch"]))
        if dropped:
            LOGGER.info(f"results.csv: dropped {dropped} row(s) after epoch {ckpt['epoch']}, the epoch of {source}")
    state = ckpt.get("loop")
    if not state:
        return
    progress = trainer.progress
    progress.last_opt_step, progress.accumulate = int(state["last_opt_step"]), int(state["accumulate"])
    progress.early_stop = dict(state["early_stop"])
    progress.results = ValResults(*state["results"])
    if state["class_maps"] is not None:
        progress.class_maps = np.array(state["class_maps"])
    if state["scaler"] is not None and trainer.scaler.is_enabled():
        trainer.scaler.load_state_dict(state["scaler"])
    if not dist.is_initialized():
        _restore_generators(trainer, state["rng"], int(ckpt["epoch"]) + 1)


def _restore_generators(trainer: Trainer, rng: dict, epochs_done: int) -> None:
    """Every generator from the checkpoint, except the shuffle of an endless loader with 0 workers, which is
    replayed instead (its sampler holds a suspended permutation that no generator state describes)."""
    generators, loader = _generators(trainer), trainer.train_loader
    endless = hasattr(loader, "skip")
    if endless:
        generators.pop("shuffle", None)
    seed.set_rng_state(rng, generators)
    if endless and loader.num_workers == 0:  # with workers the shuffle starts afresh, as before
        loader.skip(epochs_done * len(loader))


def restore(ckpt: dict, source: str, epochs: int, ema: ModelEMA | None, step: Step) -> Resumed:
    """Resume from ``ckpt`` (read from ``source``): EMA weights and update count and the step's own state are
    loaded in place; returns the epochs. A finished run (no optimizer) cannot resume; asking for fewer total
    epochs than already trained fine-tunes for ``epochs`` more."""
    if ckpt.get("optimizer") is None:
        raise ValueError(f"{source}: training to {epochs} epochs is finished, nothing to resume.\n"
                         f"Start a new training without --resume, i.e. 'python train.py --weights {source}'")
    if ema is not None and ckpt.get("ema"):
        state = ckpt["ema"]["state_dict"]
        ema.ema.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
        ema.updates = int(ckpt["updates"])
    start_epoch = int(ckpt["epoch"]) + 1
    key = step.checkpoint_key
    if key:
        if key not in ckpt:
            raise KeyError(f"{source}: no '{key}' state to resume the training step from")
        step.load_state_dict(ckpt[key])
    if epochs < start_epoch:
        LOGGER.info(f"{source} has been trained for {ckpt['epoch']} epochs. Fine-tuning for {epochs} more epochs.")
        epochs += int(ckpt["epoch"])
    LOGGER.info(f"Resuming training from {source} from epoch {start_epoch} to {epochs} total epochs")
    return Resumed(start_epoch, epochs, float(ckpt.get("best_fitness") or 0.0))


def strip_optimizer(path: Path) -> None:
    """Final form: model = EMA (fp16), no optimizer/EMA/updates/best_fitness/loop state, epoch -1. Idempotent."""
    ckpt = checkpoint.safe_load(path)
    if ckpt.get("ema"):
        ckpt["model"] = ckpt["ema"]
    record = ckpt["model"]
    record["state_dict"] = {k: v.half() if v.is_floating_point() else v for k, v in record["state_dict"].items()}
    for k in ("optimizer", "best_fitness", "ema", "updates"):
        ckpt[k] = None
    ckpt.pop("loop", None)
    ckpt["epoch"] = -1
    checkpoint.save_checkpoint(ckpt, path)
    LOGGER.info(f"Optimizer stripped from {path}, {path.stat().st_size / 1e6:.1f}MB")


def find_last_checkpoint(search_dir: Path | str = ".") -> Path:
    """The newest ``last*.pt`` under ``runs/`` (else anywhere below ``search_dir``)."""
    base = Path(search_dir)
    files = list((base / "runs").rglob("last*.pt")) or list(base.rglob("last*.pt"))
    if not files:
        raise FileNotFoundError(f"--resume: no last*.pt checkpoint found under {base.resolve()}")
    return max(files, key=lambda f: f.stat().st_ctime)
