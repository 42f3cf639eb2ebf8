"""Checkpoints of a run: what last.pt / best.pt / epoch{N}.pt hold, resuming from one, and the final strip.

A training checkpoint: epoch, best_fitness, model and EMA records (models.weights.model_record), EMA update
count, optimizer state, the run's options, a date, and the step's own state under ``step.checkpoint_key``.
Files are written atomically (utils.checkpoint.save_checkpoint), so the last good one survives a crash.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from engine.state import Trainer
from engine.step import Step
from models import weights as model_weights
from utils import checkpoint, dist
from utils.ema import ModelEMA

LOGGER = logging.getLogger("train")


@dataclass(frozen=True)
class Resumed:
    """Where a resumed run restarts: its first epoch, the total epochs and the best fitness so far."""

    start_epoch: int
    epochs: int
    best_fitness: float


def save_run(trainer: Trainer, epoch: int, best: bool) -> None:
    """last.pt every time; best.pt when this epoch's fitness is the best; epoch{N}.pt every save_period."""
    ckpt = {
        "epoch": epoch,
        "best_fitness": float(trainer.progress.best_fitness),
        "model": model_weights.model_record(dist.de_parallel(trainer.model)),
        "ema": model_weights.model_record(trainer.ema.ema),
        "updates": trainer.ema.updates,
        "optimizer": trainer.optimizer.state_dict(),
        "opt": trainer.options_record,
        "git": {},
        "date": datetime.now().isoformat(),
    }
    if trainer.step.checkpoint_key:
        ckpt[trainer.step.checkpoint_key] = trainer.step.state_dict()
    weights_dir, period = trainer.weights_dir, trainer.options.save_period
    checkpoint.save_checkpoint(ckpt, weights_dir / "last.pt")
    if best:
        checkpoint.save_checkpoint(ckpt, weights_dir / "best.pt")
    if period > 0 and epoch >= 0 and epoch % period == 0:
        checkpoint.save_checkpoint(ckpt, weights_dir / f"epoch{epoch}.pt")
    trainer.callbacks.run("on_model_save", weights_dir / "last.pt", epoch, best)


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
    """Final form: model = EMA (fp16), no optimizer/EMA/updates/best_fitness, epoch -1."""
    ckpt = checkpoint.safe_load(path)
    if ckpt.get("ema"):
        ckpt["model"] = ckpt["ema"]
    for k in ("optimizer", "best_fitness", "ema", "updates"):
        ckpt[k] = None
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
