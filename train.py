"""Train a YOLOv5 detector.

    python train.py --data BCCD.yaml --cfg yolov5n.yaml --weights '' --img 320 --epochs 60
    torchrun --nproc_per_node 2 train.py --data coco128.yaml --weights yolov5s.pt --device 0,1

The loop owns AMP, accumulation, clipping, EMA, warmup, schedules, validation, checkpoints and logging. The loss
comes from a *step* object (docs/design.md, "The training seam"): ``main(opt, step_factory=...)`` lets
train_kd.py plug in distillation without touching the loop.
"""
from __future__ import annotations

import argparse
import logging
import math
import random
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn as nn
import yaml
from tqdm import tqdm

import val as validate
from data.config import check_dataset
from engine.step import DetectionStep, Step, StepContext, detection_step  # noqa: F401 - re-exported
from data.loader import create_dataloader, random_imgsz, resize_batch
from models import weights as model_weights
from models.yolo import Model
from utils import amp, autoanchor, checkpoint, dist, metrics, optim, results
from utils.callbacks import Callbacks
from utils.device import select_device
from utils.ema import ModelEMA
from utils.loss import ComputeLoss
from utils.paths import increment_path
from utils.seed import init_seeds

ROOT = Path(__file__).resolve().parent
LOGGER = logging.getLogger("train")
GRAD_CLIP = 10.0
BAR_FORMAT = "{l_bar}{bar:10}{r_bar}"


class NonFiniteLossError(RuntimeError):
    """Raised when a step returns a NaN/inf loss; the last good checkpoint is left untouched."""


@dataclass
class Run:
    """Everything one training run holds; built by ``setup`` and mutated by the loop."""

    opt: argparse.Namespace
    hyp: dict
    device: torch.device
    data: dict
    save_dir: Path
    callbacks: Callbacks
    model: nn.Module = None
    ema: ModelEMA | None = None
    step: Any = None
    compute_loss: ComputeLoss | None = None
    optimizer: torch.optim.Optimizer | None = None
    scheduler: Any = None
    lf: Callable | None = None
    scaler: Any = None
    train_loader: Any = None
    dataset: Any = None
    val_loader: Any = None
    imgsz: int = 640
    gs: int = 32
    batch_size: int = 16
    nc: int = 80
    names: dict = field(default_factory=dict)
    amp: bool = False
    precision: amp.Precision | None = None
    start_epoch: int = 0
    epochs: int = 100
    best_fitness: float = 0.0
    accumulate: int = 1
    last_opt_step: int = -1
    nw: int = 100
    clip_params: list = field(default_factory=list)
    step_params: list = field(default_factory=list)
    rng: np.random.Generator = None
    class_weights: np.ndarray | None = None
    maps: np.ndarray | None = None
    term_keys: list = field(default_factory=lambda: ["task/box", "task/obj", "task/cls"])

    @property
    def rank(self) -> int:
        return dist.get_rank()

    @property
    def main(self) -> bool:
        return dist.is_main_process()

    @property
    def weights_dir(self) -> Path:
        return self.save_dir / "weights"


# --------------------------------------------------------------------------------------------- set-up


def load_hyp(hyp) -> dict:
    if isinstance(hyp, dict):
        return dict(hyp)
    path = Path(hyp)
    if not path.exists() and (ROOT / "data" / "hyps" / path.name).exists():
        path = ROOT / "data" / "hyps" / path.name
    with open(path, errors="ignore") as f:
        return dict(yaml.safe_load(f))


def plain_opt(opt: argparse.Namespace) -> dict:
    """vars(opt) with paths as strings, safe for yaml and for weights_only checkpoints."""
    def clean(v):
        if isinstance(v, Path):
            return str(v)
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        return v
    return {k: clean(v) for k, v in vars(opt).items()}


def check_img_size(imgsz: int, gs: int) -> int:
    """Round up to a multiple of the max stride, with a floor of 2 * gs."""
    new = max(math.ceil(int(imgsz) / gs) * gs, 2 * gs)
    if new != imgsz:
        LOGGER.warning(f"WARNING: --img-size {imgsz} must be multiple of max stride {gs}, updating to {new}")
    return new


def intersect_state(source: dict, target: dict, exclude=()) -> dict:
    """Entries of ``source`` whose key exists in ``target`` with the same shape and contains no excluded text."""
    return {k: v for k, v in source.items()
            if k in target and not any(x in k for x in exclude) and v.shape == target[k].shape}


def build_model(run: Run, ckpt: dict | None) -> nn.Module:
    """From --cfg, from --weights (transferring matching keys), or both; anchors excluded when re-specified."""
    opt, hyp = run.opt, run.hyp
    anchors = hyp.get("anchors")
    if ckpt is not None:
        record = ckpt.get("model") or ckpt.get("ema")
        model = Model(opt.cfg or record["yaml"], ch=3, nc=run.nc, anchors=anchors)
        exclude = ["anchor"] if (opt.cfg or anchors) and not opt.resume else []
        state = {k: v.float() if v.is_floating_point() else v for k, v in record["state_dict"].items()}
        csd = intersect_state(state, model.state_dict(), exclude)
        model.load_state_dict(csd, strict=False)
        LOGGER.info(f"Transferred {len(csd)}/{len(model.state_dict())} items from {opt.weights}")
    else:
        if not opt.cfg:
            raise ValueError("either --cfg or --weights must be given")
        model = Model(opt.cfg, ch=3, nc=run.nc, anchors=anchors)
    model.names = dict(run.names)
    freeze_layers(model, opt.freeze)
    return model.to(run.device)


def freeze_layers(model: nn.Module, freeze) -> None:
    """``[10]`` freezes layers 0-9 (the backbone); a longer list names the layers explicitly."""
    freeze = list(freeze) if isinstance(freeze, (list, tuple)) else [int(freeze)]
    layers = freeze if len(freeze) > 1 else range(freeze[0])
    prefixes = [f"model.{x}." for x in layers]
    for name, p in model.named_parameters():
        p.requires_grad = not any(x in name for x in prefixes)
        if not p.requires_grad:
            LOGGER.info(f"freezing {name}")


def build_loaders(run: Run) -> None:
    opt, world = run.opt, dist.get_world_size()
    run.train_loader, run.dataset = create_dataloader(
        run.data["train"], run.imgsz, run.batch_size // world, run.gs, opt.single_cls, hyp=run.hyp, augment=True,
        cache=None if opt.cache == "val" else opt.cache, rect=opt.rect, rank=dist.get_local_rank(),
        workers=opt.workers, image_weights=opt.image_weights, prefix="train: ", shuffle=True, seed=opt.seed,
        nc=run.nc, labels_dir=run.data.get("labels"))
    labels = np.concatenate([lb for lb in run.dataset.labels if len(lb)] or [np.zeros((0, 5))], 0)
    if len(labels) and int(labels[:, 0].max()) >= run.nc:
        raise ValueError(f"Label class {int(labels[:, 0].max())} exceeds nc={run.nc} in {opt.data}. "
                         f"Possible class labels are 0-{run.nc - 1}")
    if run.main:
        run.val_loader = create_dataloader(
            run.data["val"], run.imgsz, run.batch_size // world * 2, run.gs, opt.single_cls, hyp=run.hyp,
            cache=None if opt.noval else opt.cache, rect=True, rank=-1, workers=opt.workers * 2, pad=0.5,
            prefix="val: ", nc=run.nc, labels_dir=run.data.get("labels"))[0]
    run.class_weights = class_weights(run.dataset.labels, run.nc)


def prepare_anchors(run: Run) -> None:
    """AutoAnchor and the fp16 round trip, on fresh (non-resumed) runs only."""
    if run.opt.resume:
        return
    detect = run.model.detect
    if not run.opt.noautoanchor and run.main:
        autoanchor.check_anchors(detect, run.dataset.shapes, run.dataset.labels, thr=run.hyp["anchor_t"],
                                 imgsz=run.imgsz, seed=run.opt.seed)
    if dist.is_initialized():  # every rank must train with rank 0's anchors
        anchors = dist.broadcast_object(detect.anchors.cpu())
        with torch.no_grad():
            detect.anchors.copy_(anchors.to(detect.anchors.device))
    run.model.half().float()  # upstream starts every fresh run from fp16-rounded weights


def check_amp(model: nn.Module, device: torch.device, dtype: torch.dtype = torch.float16) -> bool:
    """AMP is used only if an autocast forward (``dtype``) matches the fp32 one closely (boxes of a 256 px
    image). The input comes from a private generator, so the global RNG, hence reproducibility, is untouched."""
    if device.type not in ("cuda", "cpu"):
        return False
    model.eval()
    try:
        x = torch.rand(1, 3, 256, 256, device=device, generator=torch.Generator(device).manual_seed(0))
        with torch.no_grad():
            a = model(x)[0]
            with torch.autocast(device_type=device.type, dtype=dtype):
                b = model(x)[0].float()
        ok = torch.allclose(a[..., :4], b[..., :4], atol=0.5, rtol=0.05)
    except Exception as e:  # noqa: BLE001 - any failure means AMP is not safe here
        LOGGER.warning(f"AMP: checks failed ({e}), disabling Automatic Mixed Precision")
        ok = False
    finally:
        model.train()
    LOGGER.info("AMP: checks passed" if ok else "AMP: checks failed, training in FP32")
    return bool(ok)


def build_optimization(run: Run, ckpt: dict | None, step_factory) -> None:
    """EMA, loss, step (with its modules), optimizer, scheduler, scaler, then resume state if any."""
    opt, hyp = run.opt, run.hyp
    run.ema = ModelEMA(run.model) if run.main else None
    run.compute_loss = ComputeLoss(run.model.detect, hyp, nc=run.nc, imgsz=run.imgsz,
                                   label_smoothing=opt.label_smoothing)
    run.nw = optim.warmup_iterations(hyp["warmup_epochs"], len(run.train_loader))
    run.step = step_factory(StepContext(run.model, run.compute_loss, hyp, opt, run.device, run.data, run.imgsz,
                                        run.save_dir, run.nw, len(run.train_loader), opt.epochs, run.main))
    run.term_keys = list(run.step.term_names)
    if run.step.modules is not None:
        run.step.modules.to(run.device)
        run.step_params = [p for p in run.step.modules.parameters() if p.requires_grad]
    run.accumulate = optim.accumulate_steps(run.batch_size)
    decay = optim.scaled_weight_decay(hyp["weight_decay"], run.batch_size, run.accumulate)
    run.optimizer = optim.build_optimizer(run.model, opt.optimizer, hyp["lr0"], hyp["momentum"], decay)
    if run.step_params:
        optim.add_module_group(run.optimizer, run.step_params, decay)
    run.clip_params = [p for p in run.model.parameters()] + run.step_params
    run.epochs = opt.epochs
    if ckpt is not None and opt.resume:
        restore(run, ckpt)
    run.scheduler, run.lf = optim.build_scheduler(run.optimizer, run.epochs, hyp["lrf"], opt.cos_lr, 0)
    if ckpt is not None and opt.resume:
        run.optimizer.load_state_dict(ckpt["optimizer"])
    run.scheduler.last_epoch = run.start_epoch - 1
    run.precision = amp.resolve(run.device, opt.amp, opt.amp_dtype,
                                check=lambda dtype: check_amp(run.model, run.device, dtype))
    run.amp = run.precision.enabled
    run.scaler = torch.amp.GradScaler("cuda", enabled=run.precision.use_scaler)  # bf16 needs no loss scaling


def restore(run: Run, ckpt: dict) -> None:
    """Resume: EMA weights and update count, best fitness, epoch counter and the step's own state."""
    if ckpt.get("optimizer") is None:
        raise ValueError(f"{run.opt.weights}: training to {run.opt.epochs} epochs is finished, nothing to resume.\n"
                         f"Start a new training without --resume, i.e. 'python train.py --weights {run.opt.weights}'")
    if run.ema is not None and ckpt.get("ema"):
        state = ckpt["ema"]["state_dict"]
        run.ema.ema.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
        run.ema.updates = int(ckpt["updates"])
    run.best_fitness = float(ckpt.get("best_fitness") or 0.0)
    run.start_epoch = int(ckpt["epoch"]) + 1
    key = run.step.checkpoint_key
    if key:
        if key not in ckpt:
            raise KeyError(f"{run.opt.weights}: no '{key}' state to resume the training step from")
        run.step.load_state_dict(ckpt[key])
    if run.epochs < run.start_epoch:
        LOGGER.info(f"{run.opt.weights} has been trained for {ckpt['epoch']} epochs. "
                    f"Fine-tuning for {run.epochs} more epochs.")
        run.epochs += int(ckpt["epoch"])
    LOGGER.info(f"Resuming training from {run.opt.weights} from epoch {run.start_epoch} to {run.epochs} total epochs")


def wrap_distributed(run: Run) -> nn.Module:
    """DDP for the model; the step's modules are broadcast once and their grads averaged by hand."""
    if not dist.is_initialized():
        return run.model
    model = run.model
    if run.opt.sync_bn and run.device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        LOGGER.info("Using SyncBatchNorm()")
    if run.step.modules is not None:
        dist.broadcast_module(run.step.modules)
    ids = [run.device.index] if run.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids, output_device=ids[0] if ids else None)


def setup(opt: argparse.Namespace, device: torch.device, step_factory, callbacks: Callbacks) -> Run:
    hyp = load_hyp(opt.hyp)
    opt.hyp = dict(hyp)  # the resolved values travel in opt.yaml and the checkpoint
    run = Run(opt=opt, hyp=hyp, device=device, data={}, save_dir=Path(opt.save_dir), callbacks=callbacks)
    callbacks.run("on_pretrain_routine_start")
    run.weights_dir.mkdir(parents=True, exist_ok=True)
    LOGGER.info("hyperparameters: " + ", ".join(f"{k}={v}" for k, v in hyp.items()))
    if run.main:
        with open(run.save_dir / "hyp.yaml", "w") as f:
            yaml.safe_dump(hyp, f, sort_keys=False)
        with open(run.save_dir / "opt.yaml", "w") as f:
            yaml.safe_dump(plain_opt(opt), f, sort_keys=False)
    init_seeds(opt.seed + 1 + max(run.rank, -1), deterministic=True)
    run.rng = np.random.default_rng(opt.seed + 1 + max(run.rank, 0))
    with dist.main_process_first():
        run.data = check_dataset(opt.data)
    run.nc = 1 if opt.single_cls else int(run.data["nc"])
    run.names = {0: "item"} if opt.single_cls and len(run.data["names"]) != 1 else dict(run.data["names"])
    weights = str(opt.weights or "")
    ckpt = model_weights.load_checkpoint(weights) if weights.endswith(".pt") else None
    run.model = build_model(run, ckpt)
    run.gs = max(int(run.model.stride.max()), 32)
    run.imgsz = check_img_size(opt.imgsz, run.gs)
    run.batch_size = opt.batch_size if opt.batch_size > 0 else 16  # AutoBatch: CPU fallback of upstream
    build_loaders(run)
    prepare_anchors(run)
    build_optimization(run, ckpt, step_factory)
    run.model = wrap_distributed(run)
    run.maps = np.zeros(run.nc)
    if run.main and not opt.resume and not opt.noplots:
        plot_labels(run)
    callbacks.run("on_pretrain_routine_end")
    return run


# --------------------------------------------------------------------------------------------- the loop


def train_one_epoch(run: Run, epoch: int) -> dict[str, float]:
    """One pass over the training loader; returns the running mean of each named loss term."""
    model, opt, nb = run.model, run.opt, len(run.train_loader)
    model.train()
    if run.step.modules is not None:
        run.step.modules.train()
    running = results.RunningMeans()
    pbar = enumerate(run.train_loader)
    if run.main:
        pbar = tqdm(pbar, total=nb, bar_format=BAR_FORMAT, disable=not LOGGER.isEnabledFor(logging.INFO))
    run.optimizer.zero_grad()
    for i, (imgs, targets, paths, _) in pbar:
        run.callbacks.run("on_train_batch_start")
        ni = i + nb * epoch
        imgs = imgs.to(run.device, non_blocking=True).float() / 255
        targets = targets.to(run.device)
        if ni <= run.nw:
            run.accumulate = optim.warmup_accumulate(ni, run.nw, run.batch_size)
            optim.warmup(run.optimizer, ni, run.nw, run.lf(epoch), run.hyp)
        if opt.multi_scale:
            imgs = resize_batch(imgs, random_imgsz(run.imgsz, run.gs, run.rng), run.gs)
        with run.precision.autocast():  # weights, grads, optimizer and EMA stay FP32
            total, terms = run.step(model, imgs, targets, epoch=epoch, iteration=ni)
            total = total * dist.get_world_size()  # DDP averages gradients over ranks
        check_finite(run, total, terms, epoch, i)
        run.scaler.scale(total).backward()
        if ni - run.last_opt_step >= run.accumulate:
            optimizer_step(run)
            run.last_opt_step = ni
        running.update(terms)
        run.term_keys = list(terms)
        if run.main:
            pbar.set_description(progress_row(run, epoch, running.means, targets.shape[0], imgs.shape[-1]))
            if ni < 3 and not opt.noplots:
                plot_batch(imgs, targets, paths, run.save_dir / f"train_batch{ni}.jpg", run.names)
        run.callbacks.run("on_train_batch_end", model, ni, imgs, targets, paths)
    return running.means


def check_finite(run: Run, total: torch.Tensor, terms: dict, epoch: int, batch: int) -> None:
    finite = torch.isfinite(total.detach()).all().float()
    if dist.is_initialized():  # all ranks must stop together
        finite = dist.reduce_min(finite)
    if finite.item() < 1:
        last = run.weights_dir / "last.pt"
        kept = f"last good checkpoint kept at {last}" if last.exists() else "no checkpoint was saved yet"
        shown = ", ".join(f"{k}={float(v):.4g}" for k, v in terms.items())
        raise NonFiniteLossError(f"non-finite loss {float(total.detach().float().sum()):.4g} at epoch {epoch}, "
                                 f"batch {batch} ({shown}); stopping, {kept}")


def optimizer_step(run: Run) -> None:
    """unscale, average step-module grads over ranks, clip to 10, step, update the scaler, zero, EMA."""
    run.scaler.unscale_(run.optimizer)
    if dist.is_initialized() and run.step_params:
        dist.average_gradients(run.step_params)
    nn.utils.clip_grad_norm_(run.clip_params, max_norm=GRAD_CLIP)
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.optimizer.zero_grad()
    if run.ema is not None:
        run.ema.update(run.model)


def _widths(keys) -> list[int]:
    """Column widths: upstream's 11, wider for long KD term names so header labels never run together."""
    return [max(11, len(results.term_label(k)) + 1) for k in keys]


def progress_row(run: Run, epoch: int, means: dict, n_targets: int, size: int) -> str:
    mem = f"{torch.cuda.memory_reserved(run.device) / 1e9 if run.device.type == 'cuda' else 0:.3g}G"
    terms = "".join(f"{v:>{w}.4g}" for v, w in zip(means.values(), _widths(means)))
    return f"{f'{epoch}/{run.epochs - 1}':>11}{mem:>11}{terms}{n_targets:>11.4g}{size:>11.4g}"


def progress_header(terms) -> str:
    labels = "".join(f"{results.term_label(k):>{w}}" for k, w in zip(terms, _widths(terms)))
    return f"\n{'Epoch':>11}{'GPU_mem':>11}{labels}{'Instances':>11}{'Size':>11}"


def validate_epoch(run: Run, plots: bool = False):
    """EMA model on the val loader: ((P, R, mAP50, mAP50-95, val box, obj, cls), per-class mAP).

    Inference in the training precision (upstream: ``half=amp``); val.py keeps the EMA itself FP32 under bf16
    (autocast, no conversion) and computes losses and metrics in FP32. finish() re-validates best.pt in FP32."""
    res, maps, _ = validate.run(run.data, batch_size=run.batch_size // dist.get_world_size() * 2,
                                imgsz=run.imgsz, half=run.amp, model=run.ema.ema, single_cls=run.opt.single_cls,
                                dataloader=run.val_loader, save_dir=run.save_dir, plots=plots,
                                callbacks=run.callbacks, compute_loss=run.compute_loss)
    return res, maps


def epoch_row(epoch: int, means: dict, res, lrs: list[float]) -> dict[str, float]:
    row = {"epoch": epoch}
    row.update({results.term_column(k): v for k, v in means.items() if k.startswith("task/")})
    row.update(zip(("metrics/precision", "metrics/recall", "metrics/mAP_0.5", "metrics/mAP_0.5:0.95",
                    "val/box_loss", "val/obj_loss", "val/cls_loss"), (float(x) for x in res)))
    row.update({f"x/lr{j}": lr for j, lr in enumerate(lrs)})
    row.update({results.term_column(k): v for k, v in means.items() if not k.startswith("task/")})
    return row


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


def end_epoch(run: Run, epoch: int, means: dict, lrs: list, stopper: EarlyStopping, state: dict) -> bool:
    """Validate, log the csv row, save checkpoints (rank 0). Returns True to stop early."""
    opt = run.opt
    final_epoch = epoch + 1 == run.epochs or stopper.possible_stop
    run.ema.update_attr(run.model)
    if not opt.noval or final_epoch:
        state["results"], run.maps = validate_epoch(run)
    fi = float(metrics.fitness(np.array(state["results"]).reshape(1, -1))[0])
    stop = stopper(epoch, fi)
    if fi > run.best_fitness:
        run.best_fitness = fi
    results.ResultsCSV(run.save_dir / "results.csv").append(epoch_row(epoch, means, state["results"], lrs))
    run.callbacks.run("on_fit_epoch_end", epoch, means, state["results"], fi)
    if not opt.nosave or final_epoch:
        save_run(run, epoch, best=run.best_fitness == fi)
    return stop


def train_epochs(run: Run) -> tuple:
    """The epoch loop. Returns the last validation results."""
    stopper, state = EarlyStopping(run.opt.patience), {"results": (0.0,) * 7}
    LOGGER.info(f"Image sizes {run.imgsz} train, {run.imgsz} val\nUsing {run.train_loader.num_workers} dataloader "
                f"workers\nLogging results to {run.save_dir}\nStarting training for {run.epochs} epochs...")
    run.callbacks.run("on_train_start")
    for epoch in range(run.start_epoch, run.epochs):
        run.callbacks.run("on_train_epoch_start")
        resample_images(run)
        if dist.is_initialized() and hasattr(run.train_loader.sampler, "set_epoch"):
            run.train_loader.sampler.set_epoch(epoch)
        LOGGER.info(progress_header(run.term_keys))
        try:
            means = train_one_epoch(run, epoch)
        except KeyboardInterrupt:
            if run.main:
                save_run(run, epoch - 1, best=False)
                LOGGER.warning(f"Interrupted: saved {run.weights_dir / 'last.pt'} (resume with --resume)")
            raise
        run.callbacks.run("on_train_epoch_end", epoch)
        lrs = [g["lr"] for g in run.optimizer.param_groups]
        run.scheduler.step()
        stop = end_epoch(run, epoch, means, lrs, stopper, state) if run.main else False
        if dist.is_initialized():
            stop = dist.broadcast_object(stop)
        if stop:
            break
    return state["results"]


# --------------------------------------------------------------------------------------------- artefacts


def save_run(run: Run, epoch: int, best: bool) -> None:
    """last.pt every time; best.pt when this epoch's fitness is the best; epoch{N}.pt every save_period."""
    ckpt = {
        "epoch": epoch,
        "best_fitness": float(run.best_fitness),
        "model": model_weights.model_record(dist.de_parallel(run.model)),
        "ema": model_weights.model_record(run.ema.ema),
        "updates": run.ema.updates,
        "optimizer": run.optimizer.state_dict(),
        "opt": plain_opt(run.opt),
        "git": {},
        "date": datetime.now().isoformat(),
    }
    if run.step.checkpoint_key:
        ckpt[run.step.checkpoint_key] = run.step.state_dict()
    checkpoint.save_checkpoint(ckpt, run.weights_dir / "last.pt")
    if best:
        checkpoint.save_checkpoint(ckpt, run.weights_dir / "best.pt")
    if run.opt.save_period > 0 and epoch >= 0 and epoch % run.opt.save_period == 0:
        checkpoint.save_checkpoint(ckpt, run.weights_dir / f"epoch{epoch}.pt")
    run.callbacks.run("on_model_save", run.weights_dir / "last.pt", epoch, best)


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


def finish(run: Run, res) -> tuple:
    """Strip last/best, re-validate best.pt with plots, write results.png."""
    for f in (run.weights_dir / "last.pt", run.weights_dir / "best.pt"):
        if f.exists():
            strip_optimizer(f)
    best = run.weights_dir / "best.pt"
    if best.exists():
        LOGGER.info(f"\nValidating {best}...")
        is_coco = str(run.data.get("val", "")).endswith("coco/val2017.txt")
        model = model_weights.load_model(best, run.device, fuse=True)
        res, _, _ = validate.run(run.data, batch_size=run.batch_size // dist.get_world_size() * 2,
                                 imgsz=run.imgsz, model=model, iou_thres=0.65 if is_coco else 0.60,
                                 single_cls=run.opt.single_cls, dataloader=run.val_loader, save_dir=run.save_dir,
                                 save_json=is_coco, verbose=True, plots=not run.opt.noplots,
                                 callbacks=run.callbacks, compute_loss=run.compute_loss)
    if (run.save_dir / "results.csv").exists() and not run.opt.noplots:
        results.plot_results(run.save_dir / "results.csv")
    run.callbacks.run("on_train_end", run.weights_dir / "last.pt", best)
    LOGGER.info(f"Results saved to {run.save_dir}")
    return res


def plot_batch(imgs, targets, paths, fname: Path, names: dict) -> None:
    try:
        from utils import plots
    except ImportError:
        return
    plots.plot_images(imgs.detach().cpu(), targets.detach().cpu(), paths, fname, names)


def plot_labels(run: Run) -> None:
    try:
        from utils import plots
    except ImportError:
        return
    labels = [lb for lb in run.dataset.labels if len(lb)]
    plots.plot_labels(np.concatenate(labels, 0) if labels else np.zeros((0, 5)), run.names, run.save_dir)


def class_weights(labels: list, nc: int) -> np.ndarray:
    """Inverse class frequency, normalised to sum 1 (classes never seen count once)."""
    classes = np.concatenate([lb[:, 0] for lb in labels if len(lb)] or [np.zeros(0)]).astype(int)
    counts = np.bincount(classes, minlength=nc).astype(np.float64)
    counts[counts == 0] = 1
    w = 1 / counts
    return w / w.sum()


def resample_images(run: Run) -> None:
    """--image-weights: draw this epoch's images by class weight x (1 - mAP_c)^2 / nc."""
    if not run.opt.image_weights:
        return
    cw = run.class_weights * (1 - run.maps) ** 2 / run.nc
    per_image = np.stack([np.bincount(lb[:, 0].astype(int), minlength=run.nc) for lb in run.dataset.labels])
    iw = (per_image * cw).sum(1)
    n = len(run.dataset.labels)
    run.dataset.indices = np.array(random.choices(range(n), weights=iw if iw.sum() > 0 else None, k=n))


# --------------------------------------------------------------------------------------------- entry points


def train(opt: argparse.Namespace, device: torch.device, step_factory=None, callbacks: Callbacks | None = None):
    """Set up, run the epochs, finish. Returns the final validation results tuple."""
    run = setup(opt, device, step_factory or detection_step, callbacks or Callbacks())
    t0 = time.time()
    res = train_epochs(run)
    if not run.main:
        return res
    LOGGER.info(f"\n{run.epochs - run.start_epoch} epochs completed in {(time.time() - t0) / 3600:.3f} hours.")
    return finish(run, res)


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser("YOLOv5 training", add_help=add_help)
    p.add_argument("--weights", type=str, default="", help="initial weights path ('' = from scratch)")
    p.add_argument("--cfg", type=str, default="", help="model.yaml path")
    p.add_argument("--data", type=str, default="data/coco128.yaml", help="dataset.yaml path")
    p.add_argument("--hyp", type=str, default="data/hyps/hyp.scratch-low.yaml", help="hyperparameters path")
    p.add_argument("--epochs", type=int, default=100, help="total training epochs")
    p.add_argument("--batch-size", type=int, default=16, help="total batch size for all GPUs, -1 for autobatch")
    p.add_argument("--imgsz", "--img", "--img-size", type=int, default=640, help="train, val image size (pixels)")
    p.add_argument("--rect", action="store_true", help="rectangular training")
    p.add_argument("--resume", nargs="?", const=True, default=False, help="resume most recent training")
    p.add_argument("--nosave", action="store_true", help="only save final checkpoint")
    p.add_argument("--noval", action="store_true", help="only validate final epoch")
    p.add_argument("--noautoanchor", action="store_true", help="disable AutoAnchor")
    p.add_argument("--noplots", action="store_true", help="save no plot files")
    p.add_argument("--evolve", type=int, nargs="?", const=300, help="evolve hyperparameters (not supported)")
    p.add_argument("--bucket", type=str, default="", help="gsutil bucket (ignored)")
    p.add_argument("--cache", type=str, nargs="?", const="ram", help="image --cache ram/disk")
    p.add_argument("--image-weights", action="store_true", help="use weighted image selection for training")
    p.add_argument("--device", default="", help="cuda device, i.e. 0 or 0,1,2,3 or cpu")
    p.add_argument("--multi-scale", action="store_true", help="vary img-size +/- 50%%")
    p.add_argument("--single-cls", action="store_true", help="train multi-class data as single-class")
    p.add_argument("--optimizer", type=str, choices=["SGD", "Adam", "AdamW"], default="SGD", help="optimizer")
    p.add_argument("--sync-bn", action="store_true", help="use SyncBatchNorm, only available in DDP mode")
    p.add_argument("--workers", type=int, default=8, help="max dataloader workers (per RANK in DDP mode)")
    p.add_argument("--project", default=str(ROOT / "runs" / "train"), help="save to project/name")
    p.add_argument("--name", default="exp", help="save to project/name")
    p.add_argument("--exist-ok", action="store_true", help="existing project/name ok, do not increment")
    p.add_argument("--quad", action="store_true", help="quad dataloader (not supported)")
    p.add_argument("--cos-lr", action="store_true", help="cosine LR scheduler")
    p.add_argument("--label-smoothing", type=float, default=0.0, help="Label smoothing epsilon")
    p.add_argument("--patience", type=int, default=100, help="EarlyStopping patience (epochs without improvement)")
    p.add_argument("--freeze", nargs="+", type=int, default=[0], help="Freeze layers: backbone=10, first3=0 1 2")
    p.add_argument("--save-period", type=int, default=-1, help="Save checkpoint every x epochs (disabled if < 1)")
    p.add_argument("--seed", type=int, default=0, help="Global training seed")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                   help="mixed precision (default: on; on a CPU it means bf16 autocast where the "
                        "processor has native bf16, else FP32)")
    p.add_argument("--amp-dtype", choices=("fp16", "bf16"), default=None,
                   help="autocast dtype (default: fp16 + GradScaler on CUDA, bf16 on CPU)")
    p.add_argument("--local_rank", "--local-rank", type=int, default=-1, help="Automatic DDP Multi-GPU argument")
    for flag in ("--entity", "--upload_dataset", "--bbox_interval", "--artifact_alias"):
        p.add_argument(flag, nargs="?", const=True, default=None, help="logger-service option (ignored)")
    return p


def parse_opt(argv=None) -> argparse.Namespace:
    return get_args_parser().parse_args(argv)


def find_last_checkpoint(search_dir: Path | str = ".") -> Path:
    """The newest ``last*.pt`` under ``runs/`` (else anywhere below ``search_dir``)."""
    base = Path(search_dir)
    files = list((base / "runs").rglob("last*.pt")) or list(base.rglob("last*.pt"))
    if not files:
        raise FileNotFoundError(f"--resume: no last*.pt checkpoint found under {base.resolve()}")
    return max(files, key=lambda f: f.stat().st_ctime)


def resume_options(opt: argparse.Namespace) -> argparse.Namespace:
    """Original options from <run>/opt.yaml (else the checkpoint), with weights = that last.pt."""
    last = Path(opt.resume) if isinstance(opt.resume, (str, Path)) and str(opt.resume) else find_last_checkpoint()
    if not last.is_file():
        raise FileNotFoundError(f"--resume checkpoint {last} does not exist")
    opt_yaml = last.parent.parent / "opt.yaml"
    if opt_yaml.is_file():
        with open(opt_yaml, errors="ignore") as f:
            saved = yaml.safe_load(f)
    else:
        saved = model_weights.load_checkpoint(last)["opt"]
    new = argparse.Namespace(**{**vars(parse_opt([])), **saved})
    new.cfg, new.weights, new.resume = "", str(last), True
    return new


def check_options(opt: argparse.Namespace) -> None:
    if opt.evolve:
        raise NotImplementedError("--evolve is not supported by this trainer")
    if opt.quad:
        raise NotImplementedError("--quad is not supported by this trainer")
    if not (opt.cfg or opt.weights):
        raise ValueError("either --cfg or --weights must be specified")
    if dist.get_world_size() > 1:
        if opt.batch_size == -1 or opt.batch_size % dist.get_world_size():
            raise ValueError(f"--batch-size {opt.batch_size} must be a multiple of WORLD_SIZE")
        if opt.image_weights:
            raise ValueError("--image-weights is not compatible with DDP training")


def configure_logging() -> None:
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
        root.addHandler(handler)
    root.setLevel(logging.INFO if dist.is_main_process() else logging.WARNING)


def main(opt: argparse.Namespace, step_factory=None, callbacks: Callbacks | None = None):
    """Resolve resume/options, device and process group, then train. Returns the options, with ``save_dir``
    and ``results`` (P, R, mAP50, mAP50-95, val box/obj/cls) filled in."""
    configure_logging()
    if opt.resume and not opt.evolve:
        opt = resume_options(opt)
    else:
        opt.resume = False
    check_options(opt)
    device = select_device(opt.device, batch_size=opt.batch_size)
    if dist.get_local_rank() != -1 and device.type == "cuda":
        torch.cuda.set_device(dist.get_local_rank())
        device = torch.device("cuda", dist.get_local_rank())
    dist.init_distributed(device)
    try:
        if not opt.resume:
            save_dir = increment_path(Path(opt.project) / opt.name, exist_ok=opt.exist_ok) if dist.is_main_process() else None
            opt.save_dir = str(dist.broadcast_object(save_dir))
        opt.results = train(opt, device, step_factory, callbacks)
    finally:
        dist.destroy()
    return opt


def run(**kwargs) -> argparse.Namespace:
    """Python API: ``train.run(data='coco128.yaml', imgsz=320, weights='yolov5n.pt')``; returns the options
    (``opt.save_dir``, ``opt.results``). Unknown option names raise TypeError."""
    step_factory = kwargs.pop("step_factory", None)
    callbacks = kwargs.pop("callbacks", None)
    opt = override_options(parse_opt([]), kwargs, "train.run()")
    return main(opt, step_factory=step_factory, callbacks=callbacks)


def override_options(opt: argparse.Namespace, kwargs: dict, caller: str) -> argparse.Namespace:
    """Set parsed defaults from ``run(**kwargs)``; an unknown option name raises TypeError (shared by train_kd)."""
    for k, v in kwargs.items():
        if not hasattr(opt, k):
            raise TypeError(f"{caller} got an unknown option {k!r}")
        setattr(opt, k, v)
    return opt


if __name__ == "__main__":
    try:
        main(parse_opt())
    except NonFiniteLossError as e:
        sys.exit(f"ERROR: {e}")
