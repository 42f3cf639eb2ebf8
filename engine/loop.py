"""The training loop: epochs, batches, optimiser steps, validation and the results.csv row.

It owns AMP, accumulation, clipping, EMA, warmup and schedules; the loss comes from ``trainer.step``
(engine/step.py). ``train_epochs(trainer)`` runs from ``progress.start_epoch`` to ``options.epochs``.
"""
from __future__ import annotations

import logging
import random

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from data.loader import random_imgsz, resize_batch
from engine.checkpointing import save_run
from engine.state import Trainer
from utils import dist, metrics, optim, results, tensorboard
from utils.metrics import ValResults

LOGGER = logging.getLogger("train")
GRAD_CLIP = 10.0
BAR_FORMAT = "{l_bar}{bar:10}{r_bar}"


class NonFiniteLossError(RuntimeError):
    """Raised when a step returns a NaN/inf loss; the last good checkpoint is left untouched."""


class EarlyStopping:
    """Stop when fitness has not strictly improved for ``patience`` epochs (0 = never)."""

    def __init__(self, patience: int = 100):
        self.best_fitness, self.best_epoch = -1.0, 0
        self.patience = patience or float("inf")
        self.possible_stop = False

    def __call__(self, epoch: int, fitness: float) -> bool:
        if fitness > self.best_fitness:
            self.best_epoch, self.best_fitness = epoch, fitness
        delta = epoch - self.best_epoch
        self.possible_stop = delta >= self.patience - 1
        stop = delta >= self.patience
        if stop:
            LOGGER.info(f"Stopping training early as no improvement observed in last {self.patience} epochs. "
                        f"Best results observed at epoch {self.best_epoch}, best model saved as best.pt.")
        return stop

    def state_dict(self) -> dict:
        return {"best_fitness": self.best_fitness, "best_epoch": self.best_epoch}

    def load_state_dict(self, state: dict) -> None:
        self.best_fitness = float(state.get("best_fitness", self.best_fitness))
        self.best_epoch = int(state.get("best_epoch", self.best_epoch))


# --------------------------------------------------------------------------------------------- one epoch


def train_one_epoch(trainer: Trainer, epoch: int) -> dict[str, float]:
    """One pass over the training loader; returns the running mean of each named loss term."""
    model, options, progress = trainer.model, trainer.options, trainer.progress
    batches = len(trainer.train_loader)
    model.train()
    if trainer.step.modules is not None:
        trainer.step.modules.train()
    running = results.RunningMeans()
    pbar = enumerate(trainer.train_loader)
    if trainer.main:
        pbar = tqdm(pbar, total=batches, bar_format=BAR_FORMAT, disable=not LOGGER.isEnabledFor(logging.INFO))
    trainer.optimizer.zero_grad()
    for i, (imgs, targets, paths, _) in pbar:
        trainer.callbacks.run("on_train_batch_start")
        iteration = i + batches * epoch
        imgs = imgs.to(trainer.device, non_blocking=True).float() / 255
        targets = targets.to(trainer.device)
        if iteration <= options.warmup_iters:
            progress.accumulate = optim.warmup_accumulate(iteration, options.warmup_iters, options.batch_size)
            optim.warmup(trainer.optimizer, iteration, options.warmup_iters, trainer.lr_lambda(epoch), trainer.hyp)
        if options.multi_scale:
            imgs = resize_batch(imgs, random_imgsz(options.imgsz, options.stride, trainer.rng), options.stride)
        with trainer.precision.autocast():  # weights, grads, optimizer and EMA stay FP32
            total, terms = trainer.step(model, imgs, targets, epoch=epoch, iteration=iteration)
            total = total * (dist.get_world_size() * options.loss_gain)  # DDP averages gradients over ranks
        check_finite(trainer, total, terms, epoch, i)
        trainer.scaler.scale(total).backward()
        if iteration - progress.last_opt_step >= progress.accumulate:
            optimizer_step(trainer)
            progress.last_opt_step = iteration
        running.update(terms)
        progress.term_names = list(terms)
        if trainer.main:
            pbar.set_description(progress_row(trainer, epoch, running.means, targets.shape[0], imgs.shape[-1]))
            if iteration < 3 and options.plots:
                plot_batch(imgs, targets, paths, trainer.save_dir / f"train_batch{iteration}.jpg", trainer.names)
        trainer.callbacks.run("on_train_batch_end", model, iteration, imgs, targets, paths)
    return running.means


def check_finite(trainer: Trainer, total: torch.Tensor, terms: dict, epoch: int, batch: int) -> None:
    finite = torch.isfinite(total.detach()).all().float()
    if dist.is_initialized():  # all ranks must stop together
        finite = dist.reduce_min(finite)
    if finite.item() < 1:
        last = trainer.weights_dir / "last.pt"
        kept = f"last good checkpoint kept at {last}" if last.exists() else "no checkpoint was saved yet"
        shown = ", ".join(f"{k}={float(v):.4g}" for k, v in terms.items())
        raise NonFiniteLossError(f"non-finite loss {float(total.detach().float().sum()):.4g} at epoch {epoch}, "
                                 f"batch {batch} ({shown}); stopping, {kept}")


def optimizer_step(trainer: Trainer) -> None:
    """unscale, average step-module grads over ranks, clip to 10, step, update the scaler, zero, EMA."""
    trainer.scaler.unscale_(trainer.optimizer)
    if dist.is_initialized() and trainer.step_params:
        dist.average_gradients(trainer.step_params)
    nn.utils.clip_grad_norm_(trainer.clip_params, max_norm=GRAD_CLIP)
    trainer.scaler.step(trainer.optimizer)
    trainer.scaler.update()
    trainer.optimizer.zero_grad()
    if trainer.ema is not None:
        trainer.ema.update(trainer.model)


def _widths(keys) -> list[int]:
    """Column widths: upstream's 11, wider for long KD term names so header labels never run together."""
    return [max(11, len(results.term_label(k)) + 1) for k in keys]


def progress_row(trainer: Trainer, epoch: int, means: dict, n_targets: int, size: int) -> str:
    device = trainer.device
    mem = f"{torch.cuda.memory_reserved(device) / 1e9 if device.type == 'cuda' else 0:.3g}G"
    terms = "".join(f"{v:>{w}.4g}" for v, w in zip(means.values(), _widths(means)))
    return f"{f'{epoch}/{trainer.options.epochs - 1}':>11}{mem:>11}{terms}{n_targets:>11.4g}{size:>11.4g}"


def progress_header(terms) -> str:
    labels = "".join(f"{results.term_label(k):>{w}}" for k, w in zip(terms, _widths(terms)))
    return f"\n{'Epoch':>11}{'GPU_mem':>11}{labels}{'Instances':>11}{'Size':>11}"


def plot_batch(imgs, targets, paths, fname, names: dict) -> None:
    try:
        from utils import plots
    except ImportError:
        return
    plots.plot_images(imgs.detach().cpu(), targets.detach().cpu(), paths, fname, names)


def class_weights(labels: list, nc: int) -> np.ndarray:
    """Inverse class frequency, normalised to sum 1 (classes never seen count once)."""
    classes = np.concatenate([lb[:, 0] for lb in labels if len(lb)] or [np.zeros(0)]).astype(int)
    counts = np.bincount(classes, minlength=nc).astype(np.float64)
    counts[counts == 0] = 1
    w = 1 / counts
    return w / w.sum()


def resample_images(trainer: Trainer) -> None:
    """--image-weights: draw this epoch's images by class weight x (1 - mAP_c)^2 / nc."""
    if not trainer.options.image_weights:
        return
    nc, labels = trainer.nc, trainer.dataset.labels
    weights = trainer.class_weights * (1 - trainer.progress.class_maps) ** 2 / nc
    per_image = np.stack([np.bincount(lb[:, 0].astype(int), minlength=nc) for lb in labels])
    image_weights = (per_image * weights).sum(1)
    n = len(labels)
    trainer.dataset.indices = np.array(random.choices(range(n), weights=image_weights if image_weights.sum() > 0
                                                      else None, k=n))


# --------------------------------------------------------------------------------------------- epochs


def epoch_row(epoch: int, means: dict, res, lrs: list[float]) -> dict[str, float]:
    row = {"epoch": epoch}
    row.update({results.term_column(k): v for k, v in means.items() if k.startswith("task/")})
    row.update(zip(("metrics/precision", "metrics/recall", "metrics/mAP_0.5", "metrics/mAP_0.5:0.95",
                    "val/box_loss", "val/obj_loss", "val/cls_loss"), (float(x) for x in res)))
    row.update({f"x/lr{j}": lr for j, lr in enumerate(lrs)})
    row.update({results.term_column(k): v for k, v in means.items() if not k.startswith("task/")})
    return row


def end_epoch(trainer: Trainer, epoch: int, means: dict, lrs: list, stopper: EarlyStopping,
              board: tensorboard.RunWriter | None = None) -> bool:
    """Validate, log the row (results.csv and, if installed, TensorBoard), save checkpoints (rank 0).
    Returns True to stop early."""
    options, progress = trainer.options, trainer.progress
    final_epoch = epoch + 1 == options.epochs or stopper.possible_stop
    trainer.ema.update_attr(trainer.model)
    if options.validate_every_epoch or final_epoch:
        progress.results, progress.class_maps = trainer.validate(trainer.ema.ema, trainer.precision.enabled, False)
    fitness = float(metrics.fitness(np.array(progress.results).reshape(1, -1))[0])
    stop = stopper(epoch, fitness)
    progress.early_stop = stopper.state_dict()
    if fitness > progress.best_fitness:
        progress.best_fitness = fitness
    # the row first, the checkpoint last: a crash between them leaves a row that a resume drops
    row = epoch_row(epoch, means, progress.results, lrs)
    results.ResultsCSV(trainer.save_dir / "results.csv").append(row)
    if board is not None:  # the same named row, so every loss term is a curve; then the new batch/mask images
        board.scalars(row, epoch)
        board.new_images(epoch)
    trainer.callbacks.run("on_fit_epoch_end", epoch, means, progress.results, fitness)
    if options.save_every_epoch or final_epoch:
        save_run(trainer, epoch, best=progress.best_fitness == fitness)
    return stop


def interrupted(trainer: Trainer, epoch: int) -> None:
    """Ctrl-C inside an epoch. When every epoch is saved, last.pt already holds the last complete one and stays
    (an exact resume point); with --nosave the interrupted state is saved as epoch - 1 (resumable, not exact)."""
    last = trainer.weights_dir / "last.pt"
    if not trainer.options.save_every_epoch:
        save_run(trainer, epoch - 1, best=False)
        LOGGER.warning(f"Interrupted in epoch {epoch}: saved {last} as epoch {epoch - 1} (--nosave; resume with "
                       "--resume repeats the interrupted epoch from its partly trained weights)")
    elif last.exists():
        LOGGER.warning(f"Interrupted in epoch {epoch}: {last} holds epoch {epoch - 1} (resume with --resume)")
    else:
        LOGGER.warning(f"Interrupted in epoch {epoch} before any checkpoint was saved: nothing to resume")


def train_epochs(trainer: Trainer) -> ValResults:
    """The epoch loop. Returns the last validation results."""
    options, progress = trainer.options, trainer.progress
    stopper = EarlyStopping(options.patience)
    stopper.load_state_dict(progress.early_stop)  # a resumed run counts on
    LOGGER.info(f"Image sizes {options.imgsz} train, {options.imgsz} val\nUsing {trainer.train_loader.num_workers} "
                f"dataloader workers\nLogging results to {trainer.save_dir}\n"
                f"Starting training for {options.epochs} epochs...")
    trainer.callbacks.run("on_train_start")
    board = tensorboard.open_writer(trainer.save_dir) if trainer.main else None
    try:
        _epochs(trainer, stopper, board)
    finally:
        if board is not None:
            board.close()
    return progress.results


def _epochs(trainer: Trainer, stopper: EarlyStopping, board: tensorboard.RunWriter | None) -> None:
    options, progress = trainer.options, trainer.progress
    for epoch in range(progress.start_epoch, options.epochs):
        trainer.callbacks.run("on_train_epoch_start")
        resample_images(trainer)
        if dist.is_initialized() and hasattr(trainer.train_loader.sampler, "set_epoch"):
            trainer.train_loader.sampler.set_epoch(epoch)
        LOGGER.info(progress_header(progress.term_names))
        try:
            means = train_one_epoch(trainer, epoch)
        except KeyboardInterrupt:
            if trainer.main:
                interrupted(trainer, epoch)
            raise
        trainer.callbacks.run("on_train_epoch_end", epoch)
        lrs = [g["lr"] for g in trainer.optimizer.param_groups]
        trainer.scheduler.step()
        stop = end_epoch(trainer, epoch, means, lrs, stopper, board) if trainer.main else False
        if dist.is_initialized():
            stop = dist.broadcast_object(stop)
        if stop:
            break
