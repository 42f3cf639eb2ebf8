"""train_kd.py end to end on coco8 (64 px, CPU) with the upstream yolov5n.pt as teacher; spec section 10."""
from __future__ import annotations

import argparse
import csv
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

import train_kd
from distill import teacher as kd_teacher
from distill.config import DEFAULT_WEIGHTS
from models import weights
from tests.tb_events import read_events
from utils import checkpoint

ROOT = Path(__file__).resolve().parents[1]
KD_COLUMNS = {
    "fgfi": ["train/distill_fgfi"],
    "cilf": ["train/distill_kl", "train/distill_mse"],
    "fgd": ["train/distill_fgd_fg", "train/distill_fgd_bg", "train/distill_fgd_at", "train/distill_fgd_glb"],
}
WAVE2_COLUMNS = {  # not in KD_COLUMNS: the multi-method runs below use fgfi, cilf and fgd
    "cwd": ["train/distill_cwd_p3", "train/distill_cwd_p4", "train/distill_cwd_p5"],
    "pkd": ["train/distill_pkd_p3", "train/distill_pkd_p4", "train/distill_pkd_p5"],
}


def _options(tmp_path, teacher, methods, name):
    return ["--data", "coco8.yaml", "--cfg", "yolov5n.yaml", "--weights", "", "--imgsz", "64", "--epochs", "1",
            "--batch-size", "4", "--device", "cpu", "--workers", "0", "--noautoanchor", "--teacher", str(teacher),
            "--kd", *methods, "--project", str(tmp_path), "--name", name,
            "--cilf-alpha", "0.5"]  # CILF's KL and feature MSE both on (the default 1 keeps only the KL)


def _results(run_dir: Path) -> list[dict]:
    with open(run_dir / "results.csv") as f:
        return [{k.strip(): v.strip() for k, v in row.items()} for row in csv.DictReader(f)]


@pytest.fixture
def datasets_env(coco8_dir, monkeypatch):
    monkeypatch.setenv("DATASETS_DIR", str(coco8_dir.parent))


@pytest.fixture(scope="module")
def random_yolov5s_pt(untrained_checkpoint):
    """An untrained yolov5s teacher for coco8 (wider than yolov5n: PKD builds its connectors)."""
    return untrained_checkpoint("yolov5s.yaml", nc=80)


@pytest.mark.parametrize("method", ["fgfi", "cilf", "fgd", "cwd", "pkd"])
def test_one_epoch_per_method(tmp_path, datasets_env, yolov5n_pt, monkeypatch, request, method):
    teacher = request.getfixturevalue("random_yolov5s_pt") if method == "pkd" else yolov5n_pt
    built = []

    def spy(ctx):  # keep the step to inspect its teacher afterwards
        built.append(train_kd.build_step.__wrapped__(ctx))
        return built[-1]

    spy.__wrapped__ = train_kd.build_step
    monkeypatch.setattr(train_kd, "build_step", spy)
    opt = train_kd.main(train_kd.parse_opt(_options(tmp_path, teacher, [method], method)))
    run_dir = Path(opt.save_dir)

    # pitfall 7: every KD term is its own finite results.csv column, after the upstream ones
    rows = _results(run_dir)
    columns, expected = list(rows[0]), {**KD_COLUMNS, **WAVE2_COLUMNS}[method]
    assert columns[-len(expected):] == expected
    assert all(math.isfinite(float(rows[0][c])) and float(rows[0][c]) > 0 for c in expected)

    # pitfall 1 and 3: the teacher is the checkpoint's, bit-identical after the epoch, without gradients
    step = built[0]
    reference = kd_teacher.load_teacher(teacher)
    assert all(torch.equal(v, step.teacher.state_dict()[k]) for k, v in reference.state_dict().items())
    assert all(p.grad is None and not p.requires_grad for p in step.teacher.parameters())

    # checkpoints: a normal student checkpoint plus the distillation state under its own key
    student = weights.load_model(run_dir / "weights" / "last.pt")
    assert student.nc == 80
    ckpt = checkpoint.safe_load(run_dir / "weights" / "last.pt")
    assert ckpt["distill"]["teacher"]["sha256"] == kd_teacher.file_sha256(teacher)
    restored = {k: v for k, v in ckpt["distill"]["modules"].items()}
    assert restored and all(torch.equal(v.cpu(), step.modules.state_dict()[k].cpu()) for k, v in restored.items())
    if method in WAVE2_COLUMNS:  # one 1x1 connector per level, student -> teacher channels
        assert [tuple(restored[f"{method}.{i}.weight"].shape[:2]) for i in range(3)] == [
            (c_t, c_s) for c_s, c_t in zip(student.detect.in_channels, step.teacher.detect.in_channels)]
    kd_yaml = yaml.safe_load((run_dir / "kd.yaml").read_text())
    assert kd_yaml["methods"] == [method] and kd_yaml["teacher_sha256"] == kd_teacher.file_sha256(teacher)
    # the default weight is recorded, and pinned in opt.yaml so a resume keeps it if the defaults change
    assert kd_yaml["weights"] == {method: DEFAULT_WEIGHTS[method]}
    resumed = train_kd.build_config(argparse.Namespace(**yaml.safe_load((run_dir / "opt.yaml").read_text())))
    assert resumed.method_weights == ((method, DEFAULT_WEIGHTS[method]),)
    assert (run_dir / "kd_masks.jpg").stat().st_size > 0
    scalars, images = read_events(run_dir)  # TensorBoard: the KD curves and the mask figure
    assert set(expected) <= set(scalars) and "kd_masks" in images


def test_bad_options_fail_before_training(tmp_path):
    with pytest.raises(FileNotFoundError, match="teacher"):
        train_kd.main(train_kd.parse_opt(_options(tmp_path, tmp_path / "none.pt", ["fgd"], "x")))
    with pytest.raises(SystemExit):  # argparse rejects unknown methods
        train_kd.parse_opt(_options(tmp_path, "t.pt", ["mgd"], "x"))


def test_two_process_gloo_run_completes_one_epoch(tmp_path, coco8_dir, yolov5n_pt):
    """Pitfall 8: the teacher is never wrapped in DDP and the hooks sit on the unwrapped student."""
    env = {**os.environ, "DATASETS_DIR": str(coco8_dir.parent), "OMP_NUM_THREADS": "1"}
    with socket.socket() as probe:  # a free port (port 0 is not resolved by torchrun's static rendezvous)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
               str(ROOT / "train_kd.py"), *_options(tmp_path, yolov5n_pt, ["fgfi", "cilf", "fgd"], "ddp"),
               "--noplots"]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = _results(tmp_path / "ddp")
    assert all(math.isfinite(float(rows[0][c])) for cols in KD_COLUMNS.values() for c in cols)


def test_bccd_one_epoch_all_methods_with_the_upstream_bccd_teacher(tmp_path, bccd_subset_yaml, bccd_teacher_pt):
    argv = ["--data", str(bccd_subset_yaml), "--cfg", "yolov5n.yaml", "--weights", "", "--imgsz", "96", "--epochs", "1",
            "--batch-size", "16", "--device", "cpu", "--workers", "0", "--noautoanchor", "--teacher",
            str(bccd_teacher_pt), "--kd", "fgfi", "cilf", "fgd", "--cilf-alpha", "0.5", "--project", str(tmp_path), "--name", "bccd"]
    run_dir = Path(train_kd.main(train_kd.parse_opt(argv)).save_dir)
    row = _results(run_dir)[0]
    assert all(math.isfinite(float(row[c])) and float(row[c]) > 0 for cols in KD_COLUMNS.values() for c in cols)
    assert weights.load_model(run_dir / "weights" / "best.pt").nc == 3
    assert (run_dir / "kd_masks.jpg").stat().st_size > 0


def test_kd_weight_flag_common_and_per_method():
    def config(*weights):
        argv = ["--teacher", "t.pt", "--kd", "fgfi", "fgd"] + (["--kd-weight", *weights] if weights else [])
        return train_kd.build_config(train_kd.parse_opt(argv))

    assert config().method_weight("fgfi") == DEFAULT_WEIGHTS["fgfi"] and config().method_weight("fgd") == 0.03
    assert config("0.005").method_weight("fgd") == 0.005
    mixed = config("0.005", "fgd=0.05")
    assert (mixed.method_weight("fgfi"), mixed.method_weight("fgd")) == (0.005, 0.05)
    opt = train_kd.parse_opt(["--teacher", "t.pt", "--kd-weight", "fgd=0.1"])
    assert opt.kd_weight == ["fgd=0.1"]  # plain strings: opt.yaml stays loadable by yaml.safe_load
    opt.kd_weight = 0.02  # an opt.yaml written before per-method weights
    assert train_kd.build_config(opt).method_weight("fgd") == 0.02
    for bad in (["mgd=0.1"], ["fgd=x"]):
        with pytest.raises(SystemExit):
            train_kd.parse_opt(["--teacher", "t.pt", "--kd-weight", *bad])
    with pytest.raises(ValueError, match="at most one"):
        config("0.1", "0.2")


def test_cli_defaults_are_the_config_defaults():
    """One place for every KD default: KDConfig; the flags read theirs from it."""
    from distill.config import KDConfig

    opt = train_kd.parse_opt(["--teacher", "t.pt"])
    config, default = train_kd.build_config(opt), KDConfig()
    assert opt.kd == list(default.methods) == ["fgd"]
    assert config == default and opt.kd_warmup_iters == default.start_iter
    from distill.config import option_fields
    from distill.methods import METHODS

    for method, cls in METHODS.items():  # every option of every method has its flag, defaulting to the dataclass
        options = cls.Options()
        for flat, field in option_fields(method):
            assert getattr(opt, flat) == field.default and getattr(config, flat) == getattr(options, field.name)
    assert train_kd.parse_opt(["--teacher", "t.pt", "--fgd-lambda", "1e-4"]).fgd_lambda == 1e-4


def test_bccd_one_epoch_ogd_with_the_upstream_bccd_teacher(tmp_path, bccd_subset_yaml, bccd_teacher_pt):
    """--kd ogd end to end: the BCCD teacher (nc 3, the yaml's anchors; --noautoanchor keeps the student's equal)."""
    argv = ["--data", str(bccd_subset_yaml), "--cfg", "yolov5n.yaml", "--weights", "", "--imgsz", "64", "--epochs", "1",
            "--batch-size", "16", "--device", "cpu", "--workers", "0", "--noautoanchor", "--noplots", "--teacher",
            str(bccd_teacher_pt), "--kd", "ogd", "--project", str(tmp_path), "--name", "ogd"]
    run_dir = Path(train_kd.main(train_kd.parse_opt(argv)).save_dir)
    rows = _results(run_dir)
    columns = ["train/distill_ogd_box", "train/distill_ogd_cls", "train/distill_ogd_obj"]
    assert list(rows[0])[-len(columns):] == columns
    assert all(math.isfinite(float(rows[0][c])) and float(rows[0][c]) > 0 for c in columns)
    kd_yaml = yaml.safe_load((run_dir / "kd.yaml").read_text())
    assert kd_yaml["methods"] == ["ogd"] and kd_yaml["weights"] == {"ogd": DEFAULT_WEIGHTS["ogd"]}


def test_kd_balance_flag_explicit_weight_wins_and_pinning_keeps_it(caplog):
    def config(*extra):
        return train_kd.build_config(train_kd.parse_opt(["--teacher", "t.pt", "--kd", "fgfi", "fgd", *extra]))

    assert config().balance == () and config("--kd-balance", "0.5").balance == (("fgfi", 0.5), ("fgd", 0.5))
    assert config("--kd-balance", "0.5", "fgd=2").balance == (("fgfi", 0.5), ("fgd", 2.0))
    with caplog.at_level("INFO", logger="train_kd"):
        mixed = config("--kd-balance", "0.5", "--kd-weight", "0.01", "fgd=0.05")
    assert mixed.balance == (("fgfi", 0.5),) and mixed.method_weight("fgfi") == 0.01  # calibrates at 0.01
    assert "fgd is not balanced, its --kd-weight 0.05 wins" in caplog.text
    with pytest.raises(SystemExit):
        train_kd.parse_opt(["--teacher", "t.pt", "--kd-balance", "mgd=1"])
    opt = train_kd.parse_opt(["--teacher", "t.pt", "--kd", "fgfi", "fgd", "--kd-balance", "fgd=0.5"])
    assert (opt.kd_decay, opt.kd_decay_min) == ("none", 0.0)
    assert train_kd.parse_opt(["--teacher", "t.pt", "--kd-decay", "cosine"]).kd_decay == "cosine"


def test_one_epoch_with_kd_balance_logs_writes_and_checkpoints_the_weights(tmp_path, datasets_env, yolov5n_pt,
                                                                          monkeypatch):
    """A 1-iteration LR warmup (coco8: one batch per epoch) (patched; the loop's minimum is 100) so calibration ends inside the one epoch."""
    from utils import optim

    monkeypatch.setattr(optim, "warmup_iterations", lambda *args, **kwargs: 1)
    argv = _options(tmp_path, yolov5n_pt, ["fgfi", "fgd"], "balance") + ["--kd-balance", "0.5", "--noplots",
                                                                           "--kd-weight", "fgfi=0.002"]
    run_dir = Path(train_kd.main(train_kd.parse_opt(argv)).save_dir)
    chosen = yaml.safe_load((run_dir / "kd_balance.yaml").read_text())
    assert list(chosen["weights"]) == ["fgd"] and chosen["weights"]["fgd"] > 0 and chosen["samples"] == 1
    assert math.isclose(chosen["weights"]["fgd"], 0.5 * chosen["detection"] / chosen["unweighted"]["fgd"])
    state = checkpoint.safe_load(run_dir / "weights" / "last.pt")["distill"]["balance"]
    assert state == {"done": True, "weights": chosen["weights"]}
    kd_yaml = yaml.safe_load((run_dir / "kd.yaml").read_text())  # at set-up: the calibration weights
    assert kd_yaml["balance"] == {"fgd": 0.5} and kd_yaml["weights"] == {"fgfi": 0.002, "fgd": DEFAULT_WEIGHTS["fgd"]}
    opt_yaml = yaml.safe_load((run_dir / "opt.yaml").read_text())  # a resume balances the same methods
    assert opt_yaml["kd_balance"] == ["fgd=0.5"] and opt_yaml["kd_weight"] == ["fgfi=0.002"]


def test_bccd_one_epoch_with_the_teacher_at_twice_the_size(tmp_path, bccd_subset_yaml, bccd_teacher_pt):
    """--teacher-img 128 for a 64 px student: one epoch of CWD, the factor in kd.yaml, finite nonzero terms."""
    argv = ["--data", str(bccd_subset_yaml), "--cfg", "yolov5n.yaml", "--weights", "", "--imgsz", "64", "--epochs", "1",
            "--batch-size", "16", "--device", "cpu", "--workers", "0", "--noplots", "--teacher", str(bccd_teacher_pt),
            "--kd", "cwd", "--teacher-img", "128", "--project", str(tmp_path), "--name", "timg"]
    run_dir = Path(train_kd.main(train_kd.parse_opt(argv)).save_dir)
    rows = _results(run_dir)
    columns = [c for c in rows[0] if c.startswith("train/distill_cwd")]
    assert len(columns) == 3 and all(math.isfinite(float(rows[0][c])) and float(rows[0][c]) > 0 for c in columns)
    assert yaml.safe_load((run_dir / "kd.yaml").read_text())["teacher_scale"] == 2
