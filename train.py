"""Train a YOLOv5 detector.

    python train.py --data BCCD.yaml --cfg yolov5n.yaml --weights '' --img 320 --epochs 60
    torchrun --nproc_per_node 2 train.py --data coco128.yaml --weights yolov5s.pt --device 0,1

This file is the command line and the set-up: it reads the options (only ``main()`` and the ``build_*``
functions read them), builds the model, loaders, loss, step, optimizer and EMA into an ``engine.state.Trainer``,
and hands it to ``engine.loop.train_epochs``. The loss comes from a *step* (engine/step.py):
``main(opt, step_factory=...)`` lets train_kd.py plug in distillation without touching the loop.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import torch
import torch.nn as nn
import yaml

import val as validate
from data.config import check_dataset
from data.loader import create_dataloader
from engine import checkpointing, evolve, loop
from engine.evaluation import Evaluation
from engine.loop import NonFiniteLossError  # noqa: F401 - part of train.py's API
from engine.state import LoopOptions, Progress, Trainer
from engine.step import Step, StepContext, StepFactory, detection_step
from models import weights as model_weights
from models.yolo import Model
from utils import amp, atomic, autoanchor, cli, dist, optim, results, sizes
from utils.callbacks import Callbacks
from utils.device import select_device
from utils.ema import ModelEMA
from utils.loss import ComputeLoss
from utils.metrics import ValResults
from utils.paths import increment_path
from utils.seed import init_seeds

ROOT = Path(__file__).resolve().parent
LOGGER = logging.getLogger("train")


# --------------------------------------------------------------------------------------------- set-up


def load_hyp(hyp) -> dict:
    if isinstance(hyp, dict):
        return dict(hyp)
    path = Path(hyp)
    if not path.exists() and (ROOT / "data" / "hyps" / path.name).exists():
        path = ROOT / "data" / "hyps" / path.name
    with open(path, errors="ignore") as f:
        hyp = yaml.safe_load(f)
    if not isinstance(hyp, dict):
        raise ValueError(f"--hyp {path}: a hyperparameter yaml must be a mapping (lr0: 0.01, ...)")
    return dict(hyp)


def prepare_anchors(model: nn.Module, dataset, hyp: dict, imgsz: int, seed: int, autoanchor_check: bool) -> None:
    """AutoAnchor (on the main process, if asked), rank 0's anchors on every rank, and the fp16 round trip;
    for fresh (non-resumed) runs only."""
    detect = model.detect
    if autoanchor_check and dist.is_main_process():
        autoanchor.check_anchors(detect, dataset.shapes, dataset.labels, thr=hyp["anchor_t"], imgsz=imgsz, seed=seed)
    if dist.is_initialized():  # every rank must train with rank 0's anchors
        anchors = dist.broadcast_object(detect.anchors.cpu())
        with torch.no_grad():
            detect.anchors.copy_(anchors.to(detect.anchors.device))
    model.half().float()  # upstream starts every fresh run from fp16-rounded weights


def plot_labels(dataset, names: dict, save_dir: Path) -> None:
    try:
        from utils import plots
    except ImportError:
        return
    labels = [lb for lb in dataset.labels if len(lb)]
    plots.plot_labels(np.concatenate(labels, 0) if labels else np.zeros((0, 5)), names, save_dir)


# --------------------------------------------------------------------------------------------- build_* (read opt)


def build_run_dir(opt: argparse.Namespace, save_dir: Path) -> dict:
    """The resolved hyperparameters, logged and written with the options to hyp.yaml and opt.yaml."""
    hyp = load_hyp(opt.hyp)
    opt.hyp = dict(hyp)  # the resolved values travel in opt.yaml and the checkpoint
    (save_dir / "weights").mkdir(parents=True, exist_ok=True)
    LOGGER.info("hyperparameters: " + ", ".join(f"{k}={v}" for k, v in hyp.items()))
    if dist.is_main_process():
        atomic.write_text(save_dir / "hyp.yaml", yaml.safe_dump(hyp, sort_keys=False))  # a resume reads both
        atomic.write_text(save_dir / "opt.yaml", yaml.safe_dump(cli.plain_opt(opt), sort_keys=False))
    return hyp


def build_model(opt: argparse.Namespace, hyp: dict, nc: int, names: dict, ckpt: dict | None,
                device: torch.device) -> nn.Module:
    """From --cfg, from --weights (transferring matching keys), or both; anchors excluded when re-specified."""
    anchors = hyp.get("anchors")
    if ckpt is not None:
        record = ckpt.get("model") or ckpt.get("ema")
        model = Model(opt.cfg or record["yaml"], ch=3, nc=nc, anchors=anchors)
        exclude = ["anchor"] if (opt.cfg or anchors) and not opt.resume else []
        state = {k: v.float() if v.is_floating_point() else v for k, v in record["state_dict"].items()}
        csd = model_weights.intersect_state(state, model.state_dict(), exclude)
        if not csd:
            raise ValueError(f"--weights {opt.weights}: none of its {len(state)} tensors fits the model built from "
                             f"{opt.cfg or 'its yaml'} (names or shapes differ): not a checkpoint of this architecture")
        model.load_state_dict(csd, strict=False)
        LOGGER.info(f"Transferred {len(csd)}/{len(model.state_dict())} items from {opt.weights}")
        if len(csd) < len(model.state_dict()) / 2:
            LOGGER.warning(f"WARNING: --weights {opt.weights}: only {len(csd)} tensors fit, most of the model starts "
                           "from scratch (another architecture?)")
    else:
        if not opt.cfg:
            raise ValueError("either --cfg or --weights must be given")
        model = Model(opt.cfg, ch=3, nc=nc, anchors=anchors)
    model.names = dict(names)
    model_weights.freeze_layers(model, opt.freeze)
    return model.to(device)


def build_loaders(opt: argparse.Namespace, hyp: dict, data: dict, nc: int, imgsz: int, batch_size: int,
                  stride: int) -> tuple:
    """(train loader, train dataset, val loader or None off the main process); checks label classes < nc."""
    per_rank = batch_size // dist.get_world_size()
    train_loader, dataset = create_dataloader(
        data["train"], imgsz, per_rank, stride, opt.single_cls, hyp=hyp, augment=True,
        cache=None if opt.cache == "val" else opt.cache, rect=opt.rect, rank=dist.get_local_rank(),
        workers=opt.workers, image_weights=opt.image_weights, prefix="train: ", shuffle=True, seed=opt.seed,
        nc=nc, labels_dir=data.get("labels"), quad=opt.quad)
    labels = np.concatenate([lb for lb in dataset.labels if len(lb)] or [np.zeros((0, 5))], 0)
    if len(labels) and int(labels[:, 0].max()) >= nc:
        raise ValueError(f"Label class {int(labels[:, 0].max())} exceeds nc={nc} in {opt.data}. "
                         f"Possible class labels are 0-{nc - 1}")
    val_loader = None
    if dist.is_main_process():
        val_loader = create_dataloader(
            data["val"], imgsz, per_rank * 2, stride, opt.single_cls, hyp=hyp,
            cache=None if opt.noval else opt.cache, rect=True, rank=-1, workers=opt.workers * 2, pad=0.5,
            prefix="val: ", nc=nc, labels_dir=data.get("labels"))[0]
    return train_loader, dataset, val_loader


def build_optimizer(opt: argparse.Namespace, hyp: dict, model: nn.Module, step: Step, batch_size: int) -> tuple:
    """(optimizer, accumulation steps, step's trainable parameters): the model's groups plus one for the step."""
    step_params = []
    if step.modules is not None:
        step_params = [p for p in step.modules.parameters() if p.requires_grad]
    accumulate = optim.accumulate_steps(batch_size)
    decay = optim.scaled_weight_decay(hyp["weight_decay"], batch_size, accumulate)
    optimizer = optim.build_optimizer(model, opt.optimizer, hyp["lr0"], hyp["momentum"], decay)
    if step_params:
        optim.add_module_group(optimizer, step_params, decay)
    return optimizer, accumulate, step_params


@dataclass
class Inputs:
    """The data and the model, built before the loss, the step and the optimisation."""

    hyp: dict
    data: dict
    nc: int
    names: dict
    model: nn.Module
    ckpt: dict | None  # the --weights checkpoint, if any
    train_loader: torch.utils.data.DataLoader
    dataset: torch.utils.data.Dataset
    val_loader: torch.utils.data.DataLoader | None
    imgsz: int
    stride: int
    batch_size: int


class Optimization(NamedTuple):
    ema: ModelEMA | None
    step: Step
    optimizer: torch.optim.Optimizer
    accumulate: int
    step_params: list
    resumed: checkpointing.Resumed
    scheduler: torch.optim.lr_scheduler.LRScheduler
    lr_lambda: Callable[[float], float]
    precision: amp.Precision


def build_inputs(opt: argparse.Namespace, device: torch.device, save_dir: Path) -> Inputs:
    """Hyperparameters, seeds, dataset, model, loaders and (fresh runs) anchors."""
    weights = str(opt.weights or "")  # read first: a bad file stops the run before anything is written
    ckpt = model_weights.load_checkpoint(weights) if weights else None  # any name: never silently from scratch
    with dist.main_process_first():
        data = check_dataset(opt.data)  # so is a dataset that is not there
    hyp = build_run_dir(opt, save_dir)
    init_seeds(opt.seed + 1 + max(dist.get_rank(), -1), deterministic=True)
    nc = 1 if opt.single_cls else int(data["nc"])
    names = {0: "item"} if opt.single_cls and len(data["names"]) != 1 else dict(data["names"])
    model = build_model(opt, hyp, nc, names, ckpt, device)
    stride = max(int(model.stride.max()), 32)
    imgsz = sizes.check_img_size(opt.imgsz, stride)
    batch_size = opt.batch_size if opt.batch_size > 0 else 16  # AutoBatch: CPU fallback of upstream
    train_loader, dataset, val_loader = build_loaders(opt, hyp, data, nc, imgsz, batch_size, stride)
    if not opt.resume:
        prepare_anchors(model, dataset, hyp, imgsz, opt.seed, autoanchor_check=not opt.noautoanchor)
    return Inputs(hyp, data, nc, names, model, ckpt, train_loader, dataset, val_loader, imgsz, stride, batch_size)


def build_optimization(opt: argparse.Namespace, inputs: Inputs, context: StepContext,
                       step_factory: StepFactory) -> Optimization:
    """EMA, the step (its modules on the device), optimizer, resume state, scheduler and precision."""
    model, hyp, device, ckpt = inputs.model, inputs.hyp, context.device, inputs.ckpt
    ema = ModelEMA(model) if context.main_process else None
    step = step_factory(context)
    if step.modules is not None:
        step.modules.to(device)
    optimizer, accumulate, step_params = build_optimizer(opt, hyp, model, step, inputs.batch_size)
    resumed = checkpointing.Resumed(0, opt.epochs, 0.0)
    if ckpt is not None and opt.resume:
        resumed = checkpointing.restore(ckpt, opt.weights, opt.epochs, ema, step)
    scheduler, lr_lambda = optim.build_scheduler(optimizer, resumed.epochs, hyp["lrf"], opt.cos_lr, 0)
    if ckpt is not None and opt.resume:
        optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.last_epoch = resumed.start_epoch - 1
    precision = amp.resolve(device, opt.amp, opt.amp_dtype, check=lambda dtype: amp.check_amp(model, device, dtype))
    return Optimization(ema, step, optimizer, accumulate, step_params, resumed, scheduler, lr_lambda, precision)


def build_run(opt: argparse.Namespace, device: torch.device, step_factory: StepFactory,
              callbacks: Callbacks) -> tuple[Trainer, Evaluation]:
    """Everything the loop needs, in upstream's order (the RNG sees the same draws as before)."""
    save_dir, main = Path(opt.save_dir), dist.is_main_process()
    callbacks.run("on_pretrain_routine_start")
    inputs = build_inputs(opt, device, save_dir)
    compute_loss = ComputeLoss(inputs.model.detect, inputs.hyp, nc=inputs.nc, imgsz=inputs.imgsz,
                               label_smoothing=opt.label_smoothing)
    warmup_iters = optim.warmup_iterations(inputs.hyp["warmup_epochs"], len(inputs.train_loader))
    context = StepContext(inputs.model, compute_loss, inputs.hyp, opt, device, inputs.data, inputs.imgsz, save_dir,
                          warmup_iters, len(inputs.train_loader), opt.epochs, main)
    parts = build_optimization(opt, inputs, context, step_factory)
    val_batch = inputs.batch_size // dist.get_world_size() * 2
    evaluation = Evaluation(inputs.data, inputs.val_loader, compute_loss, val_batch, inputs.imgsz, opt.single_cls,
                            save_dir, callbacks, validate.run)
    options = LoopOptions(
        epochs=parts.resumed.epochs, batch_size=inputs.batch_size, imgsz=inputs.imgsz, stride=inputs.stride,
        warmup_iters=warmup_iters, multi_scale=opt.multi_scale, image_weights=opt.image_weights,
        validate_every_epoch=not opt.noval, save_every_epoch=not opt.nosave, save_period=opt.save_period,
        patience=opt.patience, plots=not opt.noplots, loss_gain=4.0 if opt.quad else 1.0)
    progress = Progress(start_epoch=parts.resumed.start_epoch, best_fitness=parts.resumed.best_fitness,
                        accumulate=parts.accumulate, class_maps=np.zeros(inputs.nc),
                        term_names=list(parts.step.term_names))
    trainer = Trainer(
        options=options, model=dist.wrap_model(inputs.model, parts.step.modules, device, opt.sync_bn), ema=parts.ema,
        step=parts.step, optimizer=parts.optimizer, scheduler=parts.scheduler, lr_lambda=parts.lr_lambda,
        scaler=torch.amp.GradScaler("cuda", enabled=parts.precision.use_scaler),  # bf16 needs no loss scaling
        precision=parts.precision, train_loader=inputs.train_loader, dataset=inputs.dataset, validate=evaluation,
        hyp=inputs.hyp, nc=inputs.nc, names=inputs.names, device=device, save_dir=save_dir, callbacks=callbacks,
        options_record=cli.plain_opt(opt), clip_params=list(inputs.model.parameters()) + parts.step_params,
        step_params=parts.step_params, rng=np.random.default_rng(opt.seed + 1 + max(dist.get_rank(), 0)),
        class_weights=loop.class_weights(inputs.dataset.labels, inputs.nc), progress=progress)
    if main and not opt.resume and not opt.noplots:
        plot_labels(inputs.dataset, inputs.names, save_dir)
    callbacks.run("on_pretrain_routine_end")
    if opt.resume:  # last: the random generators continue from the checkpoint's state
        checkpointing.restore_loop(trainer, inputs.ckpt, opt.weights)
    return trainer, evaluation


# --------------------------------------------------------------------------------------------- entry points


def finish(trainer: Trainer, evaluation: Evaluation, res: ValResults) -> ValResults:
    """Strip best/last (last.pt last: unstripped, it means unfinished), re-validate best.pt, write results.png."""
    weights_dir, plots = trainer.weights_dir, trainer.options.plots
    for f in (weights_dir / "best.pt", weights_dir / "last.pt"):
        if f.exists():
            checkpointing.strip_optimizer(f)
    best = weights_dir / "best.pt"
    if best.exists():
        res = evaluation.final(best, trainer.device, plots)
    if (trainer.save_dir / "results.csv").exists() and plots:
        results.plot_results(trainer.save_dir / "results.csv")
    trainer.callbacks.run("on_train_end", weights_dir / "last.pt", best)
    LOGGER.info(f"Results saved to {trainer.save_dir}")
    return res


def train(opt: argparse.Namespace, device: torch.device, step_factory: StepFactory | None = None,
          callbacks: Callbacks | None = None) -> ValResults:
    """Set up, run the epochs, finish. Returns the final validation results."""
    trainer, evaluation = build_run(opt, device, step_factory or detection_step, callbacks or Callbacks())
    t0 = time.time()
    res = loop.train_epochs(trainer)
    if not trainer.main:
        return res
    epochs = trainer.options.epochs - trainer.progress.start_epoch
    LOGGER.info(f"\n{epochs} epochs completed in {(time.time() - t0) / 3600:.3f} hours.")
    return finish(trainer, evaluation, res)


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
    p.add_argument("--evolve", type=int, nargs="?", const=300, help="evolve hyperparameters for x generations")
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
    p.add_argument("--quad", action="store_true", help="quad dataloader: 4 images tiled (or 1 upsampled) per 2x-size image")
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
    cli.add_refused(p, "train")  # upstream's logger-service and bucket flags: a clear error, not 'unrecognized'
    return p


def parse_opt(argv=None) -> argparse.Namespace:
    return get_args_parser().parse_args(argv)


def resume_options(opt: argparse.Namespace) -> argparse.Namespace:
    """Original options from <run>/opt.yaml (else the checkpoint), with weights = that last.pt."""
    given = isinstance(opt.resume, (str, Path)) and str(opt.resume)
    last = Path(opt.resume) if given else checkpointing.find_last_checkpoint()
    if not last.is_file():
        raise FileNotFoundError(f"--resume checkpoint {last} does not exist")
    opt_yaml = last.parent.parent / "opt.yaml"
    if opt_yaml.is_file():
        with open(opt_yaml, errors="ignore") as f:
            saved = yaml.safe_load(f)
    else:
        saved = model_weights.load_checkpoint(last).get("opt")
    if not isinstance(saved, dict):
        raise ValueError(f"--resume {last}: no training options in {opt_yaml} or in the checkpoint: not a run's "
                         "last.pt")
    new = argparse.Namespace(**{**vars(parse_opt([])), **saved})
    new.cfg, new.weights, new.resume = "", str(last), True
    return new


def check_options(opt: argparse.Namespace) -> None:
    """Options that cannot work stop here, each with a message naming the flag (nothing is silently ignored)."""
    cli.check_refused(opt, "train")
    if not (opt.cfg or opt.weights):
        raise ValueError("either --cfg or --weights must be specified")
    if dist.get_world_size() > 1:
        if opt.batch_size == -1 or opt.batch_size % dist.get_world_size():
            raise ValueError(f"--batch-size {opt.batch_size} must be a multiple of WORLD_SIZE")
        if opt.image_weights:
            raise ValueError("--image-weights is not compatible with DDP training")
    if opt.local_rank != -1 and dist.get_local_rank() == -1 and not opt.resume:  # resume: rank 0's saved value
        raise ValueError(f"--local-rank {opt.local_rank} given but LOCAL_RANK is not set: launch with torchrun "
                         "(or torch.distributed.launch), which sets both; by hand it would train one process")
    if opt.batch_size < 1:
        LOGGER.warning(f"--batch-size {opt.batch_size}: AutoBatch is not implemented, training with batch size 16")


def configure_logging() -> None:
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
        root.addHandler(handler)
    root.setLevel(logging.INFO if dist.is_main_process() else logging.WARNING)


def main(opt: argparse.Namespace, step_factory=None, callbacks: Callbacks | None = None, genes=None):
    """Resolve resume/options, device and process group, then train (or --evolve: engine/evolve.py, with the extra
    ``genes`` of train_kd.py). Returns the options, with ``save_dir`` and ``results`` (P, R, mAP50, mAP50-95, val
    box/obj/cls) filled in."""
    configure_logging()
    if opt.evolve:
        return evolve.run(opt, lambda gen: main(gen, step_factory, callbacks), load_hyp, genes)
    if opt.resume:
        if ignored := cli.ignored_on_resume(opt, vars(parse_opt([]))):
            LOGGER.warning(f"WARNING: --resume continues with the run's saved options; ignoring {', '.join(ignored)}")
        opt = resume_options(opt)
    else:
        opt.resume = False
    check_options(opt)
    device = select_device(opt.device, batch_size=opt.batch_size)
    if opt.sync_bn and (dist.get_world_size() == 1 or device.type != "cuda"):
        raise ValueError("--sync-bn needs a DDP run on CUDA devices (torchrun --nproc_per_node N, --device 0,1,..): "
                         "there is no SyncBatchNorm for one process or the CPU")
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
    opt = cli.override_options(parse_opt([]), kwargs, "train.run()")
    return main(opt, step_factory=step_factory, callbacks=callbacks)


if __name__ == "__main__":
    cli.main_or_exit(main, parse_opt(), (*cli.INPUT_ERRORS, NonFiniteLossError, atomic.WriteError))
