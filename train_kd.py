"""Train a YOLOv5 student with knowledge distillation from a frozen teacher (FGFI, CILF, FGD).

    python train_kd.py --data BCCD.yaml --cfg yolov5n.yaml --weights '' --img 320 --epochs 60 \\
        --teacher ../shared/weights/bccd-yolov5s-320.pt --kd fgd
    torchrun --nproc_per_node 2 train_kd.py ... --kd fgfi cilf

The default method is FGD (``--kd fgd``), read from ``distill.config.KDConfig.methods`` like every other KD
flag default. Every option of train.py applies; this file only adds the KD flags and hands train.py's loop a
``distill.step.DistillStep`` through its step seam (docs/design.md). It has no loop of its own. The teacher is
loaded strictly on every rank, frozen, never wrapped in DDP, never in the optimizer, the EMA or a checkpoint;
its path and sha256 go to ``<run>/kd.yaml`` with the resolved KD options, and into the checkpoint's
``distill`` entry beside the adapters / FGD modules (used by ``--resume``). best.pt/last.pt are ordinary
student checkpoints for val.py, detect.py, export.py and ``train.py --weights``.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import yaml

import train
from distill import teacher as kd_teacher
from distill.ensemble import load_teachers
from distill.config import DECAYS, DEFAULT_WEIGHTS, METHODS, KDConfig, option_fields
from distill.methods import METHODS as METHOD_CLASSES
from distill.step import DistillStep
from engine import evolve
from engine.step import StepContext
from models import weights as model_weights
from utils import amp, atomic, cli, dist

LOGGER = logging.getLogger("train_kd")


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser("YOLOv5 training with knowledge distillation", add_help=add_help,
                                     parents=[train.get_args_parser(add_help=False)])
    kd = parser.add_argument_group("distillation")
    kd.add_argument("--teacher", type=str, default="", help="teacher checkpoint (ours or upstream YOLOv5 .pt)")
    kd.add_argument("--teacher-ensemble", nargs="+", default=None, metavar="PATH",
                    help="more teachers with the same head, averaged with --teacher (the head outputs' "
                         "probabilities): an ensemble for the output methods (ogd, cilf with its defaults)")
    kd.add_argument("--teacher-dtype", choices=("fp32", "bf16"), default=None,
                    help="teacher forward precision, independent of --amp (default: the training precision); "
                         "bf16 needs native support, else FP32; outputs and features reach the KD losses in FP32")
    kd.add_argument("--teacher-img", type=int, default=None, metavar="PIXELS",
                    help="the teacher's input size, a whole multiple of --img (default: --img): the teacher sees "
                         "each batch resized to it (bilinear) and its features are average-pooled back to the "
                         "student's grid, e.g. a teacher fine-tuned at 640 for a 320 student; feature methods only")
    kd.add_argument("--kd-adapter-kernel", type=int, choices=(1, 3), default=KDConfig.adapter_kernel,
                    help="kernel of the FGFI/CILF student->teacher adapters: 3 (the papers') or 1 (a 1x1 connector "
                         "as CWD/PKD use, cheaper)")
    kd.add_argument("--kd", nargs="+", choices=METHODS, default=list(KDConfig.methods),
                    help="KD method(s); several add up (default: " + " ".join(KDConfig.methods) + ")")
    kd.add_argument("--kd-weight", nargs="+", type=kd_weight_arg, default=None, metavar="W|METHOD=W",
                    help="outer KD weight: one number for every method, or per method (fgfi=0.0025 fgd=0.05); "
                         "default: " + ", ".join(f"{m} {w:g}" for m, w in DEFAULT_WEIGHTS.items())
                         + " (tuned on BCCD; FGD's multiplies its preset)")
    kd.add_argument("--kd-layers", type=int, nargs="+", default=None,
                    help="layer indices to distil (default: the inputs of Detect, e.g. 17 20 23)")
    for method in METHODS:  # --<method>-<option>, defaults and help from the method's options dataclass
        for flat, field in option_fields(method):
            meta = field.metadata
            kd.add_argument("--" + flat.replace("_", "-"), type=meta.get("type", type(field.default)),
                            default=field.default, choices=meta.get("choices"), help=meta.get("help"))
    kd.add_argument("--kd-warmup-iters", type=int, default=KDConfig.start_iter,
                    help="no KD before this global iteration (KDConfig.start_iter; not the LR warmup)")
    kd.add_argument("--kd-stop-epoch", type=int, default=KDConfig.stop_epoch, help="no KD from this epoch on")
    kd.add_argument("--kd-balance", nargs="+", type=kd_balance_arg, default=None, metavar="R|METHOD=R",
                    help="at the end of the LR warmup fix each method's weight to R x detection / its unweighted "
                         "term (means over the last 20 warmup iterations); one R for every method or METHOD=R; "
                         "a METHOD=W --kd-weight wins (that method is not balanced); default off")
    kd.add_argument("--kd-decay", choices=DECAYS, default=KDConfig.decay,
                    help="KD weight schedule: none, or cosine (YOLOv6): every KD term times a factor falling from 1 "
                         "at the KD start to --kd-decay-min at the last iteration of the run")
    kd.add_argument("--kd-decay-min", type=float, default=KDConfig.decay_min,
                    help="floor of --kd-decay cosine, as a fraction of the weight (default 0: KD off at the end)")
    return parser


def parse_kd_weight(text: str, flag: str = "--kd-weight") -> tuple[str | None, float]:
    """'0.01' -> (None, 0.01) (every method); 'fgd=0.05' -> ('fgd', 0.05). Also --kd-balance's items."""
    method, sep, value = str(text).rpartition("=")
    if sep and method not in METHODS:
        raise argparse.ArgumentTypeError(f"{flag} {text!r}: method must be one of {METHODS}")
    try:
        return (method or None), float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{flag} {text!r}: expected a number or METHOD=number") from None


def kd_weight_arg(text: str) -> str:
    """argparse type of --kd-weight: checks the item, keeps the text (opt.yaml stays plain strings)."""
    parse_kd_weight(text)
    return text


def kd_balance_arg(text: str) -> str:
    parse_kd_weight(text, "--kd-balance")
    return text


def _common_and_per_method(items, flag: str) -> tuple[float | None, dict[str, float]]:
    items = items if isinstance(items, (list, tuple)) else [items]  # a float: older opt.yaml
    pairs = [parse_kd_weight(item, flag) for item in items if item is not None]
    common = [w for m, w in pairs if m is None]
    if len(common) > 1:
        raise ValueError(f"{flag}: give at most one common value, got {common}")
    return (common[0] if common else None), {m: w for m, w in pairs if m is not None}


def balanced_methods(opt: argparse.Namespace, methods: tuple[str, ...], per_method_weights: dict[str, float]
                     ) -> tuple[tuple[str, float], ...]:
    """--kd-balance resolved: (method, R) for each method it covers, except those with a METHOD=W --kd-weight
    (logged). A common --kd-weight does not stop balancing: it is the weight the terms calibrate with."""
    common, per_method = _common_and_per_method(getattr(opt, "kd_balance", None), "--kd-balance")
    out = []
    for method in methods:
        ratio = per_method.get(method, common)
        if ratio is not None and method in per_method_weights:
            LOGGER.info(f"--kd-balance: {method} is not balanced, its --kd-weight {per_method_weights[method]:g} wins")
        elif ratio is not None:
            out.append((method, ratio))
    return tuple(out)


def parse_opt(argv=None) -> argparse.Namespace:
    return get_args_parser().parse_args(argv)


def teacher_scale(opt: argparse.Namespace) -> int:
    """--teacher-img / --img, a whole number (1 without --teacher-img; older opt.yaml: absent)."""
    teacher_img = getattr(opt, "teacher_img", None)
    if not teacher_img:
        return 1
    if teacher_img % opt.imgsz or teacher_img < opt.imgsz:
        raise ValueError(f"--teacher-img {teacher_img} must be a whole multiple of --img {opt.imgsz} (e.g. "
                         f"{2 * opt.imgsz}): the teacher's features are pooled back to the student's grid")
    return teacher_img // opt.imgsz


def build_config(opt: argparse.Namespace, anchor_t: float = 4.0) -> KDConfig:
    """The frozen KD options from the command line (the only place that reads the KD flags)."""
    weight, per_method = _common_and_per_method(opt.kd_weight, "--kd-weight")
    methods = tuple(dict.fromkeys(opt.kd))
    options = {flat: getattr(opt, flat, field.default) for method in METHODS for flat, field in option_fields(method)}
    return KDConfig(methods=methods, weight=weight, method_weights=tuple(per_method.items()), layers=opt.kd_layers,
                    teacher_scale=teacher_scale(opt), adapter_kernel=getattr(opt, "kd_adapter_kernel", 3),
                    balance=balanced_methods(opt, methods, per_method),
                    anchor_t=anchor_t, start_iter=opt.kd_warmup_iters, stop_epoch=opt.kd_stop_epoch,
                    decay=getattr(opt, "kd_decay", KDConfig.decay),  # older opt.yaml: absent
                    decay_min=getattr(opt, "kd_decay_min", KDConfig.decay_min), **options)


def check_kd_flags(opt: argparse.Namespace, config: KDConfig) -> None:
    """KD flags that would do nothing in this run stop here, naming the flag."""
    for method in METHODS:
        if config.applies(method):
            continue
        for flat, field in option_fields(method):
            if getattr(opt, flat, field.default) != field.default:
                raise ValueError(f"--{flat.replace('_', '-')} is an option of --kd {method}, which this run does not "
                                 f"use (--kd {' '.join(config.methods)})")
    if config.decay == "none" and config.decay_min != KDConfig.decay_min:
        raise ValueError("--kd-decay-min is the floor of --kd-decay cosine: add --kd-decay cosine or drop it")
    if config.adapter_kernel != KDConfig.adapter_kernel and not any(METHOD_CLASSES[m].uses_adapters
                                                                    for m in config.methods):
        raise ValueError(f"--kd-adapter-kernel sizes the FGFI/CILF adapters, which --kd {' '.join(config.methods)} "
                         "does not use")


class KDGenes:
    """--evolve genes of train_kd.py, after the hyperparameters: each method's outer weight (``kd_weight_<method>``,
    limits 0 to 100x its default; not for a --kd-balance'd method, whose weight is calibrated) and every option
    whose field declares ``evolve`` (scale, low, high) metadata (fgd_alpha, cwd_tau, ...), from their resolved values."""

    def genes(self, opt: argparse.Namespace) -> list[evolve.Gene]:
        config, out = build_config(opt), []
        balanced = dict(config.balance)
        for method in config.methods:
            if method not in balanced:
                out.append(evolve.Gene(f"kd_weight_{method}", config.method_weight(method), 1.0, 0.0,
                                       100 * DEFAULT_WEIGHTS[method]))
            for flat, field in option_fields(method):
                if "evolve" in field.metadata:
                    out.append(evolve.Gene(flat, float(getattr(config, flat)), *field.metadata["evolve"]))
        return out

    def apply(self, opt: argparse.Namespace, values: dict[str, float]) -> None:
        weights = {k.removeprefix("kd_weight_"): v for k, v in values.items() if k.startswith("kd_weight_")}
        kept = [w for w in opt.kd_weight or [] if parse_kd_weight(w)[0] not in weights]
        opt.kd_weight = kept + [f"{m}={w!r}" for m, w in weights.items()]
        for name, value in values.items():
            if not name.startswith("kd_weight_") and hasattr(opt, name) and name.split("_")[0] in METHODS:
                setattr(opt, name, value)

    def flags(self, values: dict[str, float]) -> str:
        """The train_kd.py flags that set these values."""
        weights = [f"{k.removeprefix('kd_weight_')}={v:.5g}" for k, v in values.items() if k.startswith("kd_weight_")]
        options = [f"--{k.replace('_', '-')} {v:.5g}" for k, v in values.items()
                   if not k.startswith("kd_weight_") and k.split("_")[0] in METHODS]
        return " ".join(([f"--kd-weight {' '.join(weights)}"] if weights else []) + options)


def build_step(ctx: StepContext) -> DistillStep:
    """Step factory for train.py: called after the EMA exists, with the bare student, on every rank.

    Reads the (possibly resumed) options from ``ctx.opt``, loads and checks the teacher, writes kd.yaml.
    """
    opt = ctx.opt
    if not opt.teacher:
        raise ValueError("train_kd.py needs --teacher PATH (our or an upstream YOLOv5 .pt)")
    config = build_config(opt, anchor_t=float(ctx.hyp.get("anchor_t", 4.0)))
    teacher_dtype = kd_teacher.resolve_dtype(ctx.device, getattr(opt, "teacher_dtype", None))  # old opt.yaml: absent
    paths = [opt.teacher, *(getattr(opt, "teacher_ensemble", None) or [])]  # older opt.yaml: absent
    teacher = load_teachers(paths, ctx.device, dtype=teacher_dtype)
    class_methods = [m for m in config.methods if METHOD_CLASSES[m].compares_classes(config.options(m))]
    kd_teacher.check_classes(teacher.module.names, ctx.model.names, teacher.path,
                             ctx.data.get("yaml_file") or opt.data, class_methods)
    plot_path = None if opt.noplots else Path(ctx.save_dir) / "kd_masks.jpg"
    step = DistillStep(ctx.model, teacher, ctx.compute_loss, config, ctx.imgsz, plot_path,
                       warmup_iters=ctx.warmup_iters, total_iters=ctx.epochs * ctx.batches_per_epoch,
                       balance_path=Path(ctx.save_dir) / "kd_balance.yaml")
    if dist.is_main_process():
        teacher_path, sha256 = Path(teacher.path), teacher.sha256
        record = {"teacher": str(teacher_path), "teacher_sha256": sha256,
                  "teacher_dtype": amp.NAMES[teacher_dtype] if teacher_dtype is not None else "training",
                  "weights": {m: config.method_weight(m) for m in config.methods}, **config.to_dict()}
        atomic.write_text(Path(ctx.save_dir) / "kd.yaml", yaml.safe_dump(record, sort_keys=False))
        LOGGER.info(f"distillation: {', '.join(config.methods)} from {' + '.join(Path(p).name for p in paths)} "
                    f"(sha256 {sha256[:12]}), "
                    f"{len(step.term_names)} KD terms, {sum(p.numel() for p in step.modules.parameters())} "
                    "trainable KD parameters")
    return step


def main(opt: argparse.Namespace, callbacks=None) -> argparse.Namespace:
    """Check the KD options early (a fresh run), then run train.py's main with the distillation step."""
    if not opt.resume or opt.evolve:
        train.check_options(opt)  # refused and contradictory flags stop first
        config = build_config(opt)  # invalid combinations fail before any data or model is touched
        check_kd_flags(opt, config)
        # opt.yaml records each method's weight, so a resume keeps it even if the library defaults change; a
        # balanced method keeps only the common weight it calibrates with (a METHOD=W would stop its balancing)
        balanced = dict(config.balance)
        opt.kd_weight = [f"{m}={config.method_weight(m)!r}" for m in config.methods if m not in balanced]
        if balanced and config.weight is not None:
            opt.kd_weight.append(repr(config.weight))
        opt.kd_balance = [f"{m}={r!r}" for m, r in config.balance] or None
        members = [("--teacher-ensemble", path) for path in opt.teacher_ensemble or []]
        for flag, path in [("--teacher", opt.teacher), *members]:
            if not path or not Path(path).is_file():
                raise FileNotFoundError(f"{flag} {path!r} not found")
            model_weights.load_model(path, fuse=False)  # a damaged or foreign file stops before any run dir
    else:  # the KD flags beside --resume (train.main names the others): the run's kd options replace them
        train_flags = vars(train.parse_opt([]))
        kd_defaults = {k: v for k, v in vars(parse_opt([])).items() if k not in train_flags}
        if ignored := cli.ignored_on_resume(opt, kd_defaults):
            LOGGER.warning(f"WARNING: --resume continues with the run's saved options; ignoring {', '.join(ignored)}")
    return train.main(opt, step_factory=build_step, callbacks=callbacks, genes=KDGenes())


def run(**kwargs) -> argparse.Namespace:
    """Python API: ``train_kd.run(data=..., cfg='yolov5n.yaml', teacher='t.pt', kd=['fgd'], imgsz=320)``."""
    callbacks = kwargs.pop("callbacks", None)
    opt = cli.override_options(parse_opt([]), kwargs, "train_kd.run()")
    return main(opt, callbacks=callbacks)


if __name__ == "__main__":
    cli.main_or_exit(main, parse_opt(), (*cli.INPUT_ERRORS, train.NonFiniteLossError, atomic.WriteError))
