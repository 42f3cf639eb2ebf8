"""End-to-end training on a tiny synthetic dataset (CPU, yolov5n, 64 px, workers 0).

Covers: every run artefact, the stripped checkpoints, a step with its own trainable module (optimised, saved,
resumed, logged), Ctrl-C keeping the last complete last.pt, resume equal to uninterrupted training (weights, EMA,
optimizer state, step module, results.csv rows; tests/test_crash_resume.py kills runs at many more points),
non-finite loss handling, --weights transfer and a 2-process gloo torchrun run.
"""
from __future__ import annotations

import importlib.util
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn as nn

import train
from engine.step import StepContext
from tests.tb_events import read_events
from utils import checkpoint, results, tensorboard
from utils.callbacks import Callbacks

ROOT = Path(__file__).resolve().parents[1]
COMMON = dict(cfg="yolov5n.yaml", imgsz=64, batch_size=4, workers=0, device="cpu", noautoanchor=False,
              hyp="data/hyps/hyp.scratch-low.yaml")
HAS_PLOTS = importlib.util.find_spec("utils.plots") is not None


def make_dataset(root: Path, n_train: int = 8, n_val: int = 4) -> dict:
    """Coloured rectangles on dark noise, two classes; YOLO txt labels."""
    rng = np.random.default_rng(0)
    for split, k in (("train", n_train), ("val", n_val)):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        for i in range(k):
            im = (rng.random((48, 64, 3)) * 60).astype(np.uint8)
            rows = []
            for _ in range(int(rng.integers(1, 4))):
                c = int(rng.integers(0, 2))
                w, h = rng.uniform(0.2, 0.45), rng.uniform(0.2, 0.45)
                x, y = rng.uniform(w / 2, 1 - w / 2), rng.uniform(h / 2, 1 - h / 2)
                x1, y1, x2, y2 = int((x - w / 2) * 64), int((y - h / 2) * 48), int((x + w / 2) * 64), int((y + h / 2) * 48)
                im[y1:y2, x1:x2] = (255, 60, 60) if c == 0 else (60, 255, 60)
                rows.append(f"{c} {x:.6f} {y:.6f} {w:.6f} {h:.6f}")
            cv2.imwrite(str(root / "images" / split / f"im{i}.jpg"), im)
            (root / "labels" / split / f"im{i}.txt").write_text("\n".join(rows) + "\n")
    return {"path": str(root), "train": "images/train", "val": "images/val", "names": {0: "red", 1: "green"}}


class ToyStep:
    """Detection loss plus a term of its own trainable module: distill/toy = (w - 3)^2 per image."""

    checkpoint_key = "toy"
    term_names = ("task/box", "task/obj", "task/cls", "distill/toy")

    def __init__(self, ctx: StepContext, nan_epoch: int | None = None):
        self.compute_loss = ctx.compute_loss
        self.modules = nn.ParameterDict({"w": nn.Parameter(torch.zeros(1))})
        self.nan_epoch = nan_epoch
        self.loaded = None

    def __call__(self, model, imgs, targets, *, epoch, iteration):
        terms = self.compute_loss.components(model(imgs), targets)
        terms["distill/toy"] = ((self.modules["w"] - 3.0) ** 2).sum()
        total = sum(terms.values()) * imgs.shape[0]
        if epoch == self.nan_epoch:
            total = total * float("nan")
        return total, {k: v.detach() for k, v in terms.items()}

    def state_dict(self):
        return {"modules": self.modules.state_dict()}

    def load_state_dict(self, state):
        self.loaded = {k: v.clone() for k, v in state["modules"].items()}
        self.modules.load_state_dict(state["modules"])


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("synth"))


def _saver(store: list):
    """on_model_save callback keeping the un-stripped checkpoint contents of each save."""
    def keep(path, epoch, best):
        store.append(checkpoint.safe_load(path))
    return keep


@pytest.fixture(scope="module")
def uninterrupted(data, tmp_path_factory):
    saves, steps = [], []
    cb = Callbacks()
    cb.register("on_model_save", _saver(saves))

    def factory(ctx):
        steps.append(ToyStep(ctx))
        return steps[-1]

    opt = train.run(data=data, epochs=2, project=str(tmp_path_factory.mktemp("runs")), name="full",
                    step_factory=factory, callbacks=cb, **COMMON)
    return opt, saves, steps[0]


def test_artefacts_and_stripped_checkpoints(uninterrupted):
    opt, saves, step = uninterrupted
    d = Path(opt.save_dir)
    assert d.name == "full"
    for f in ("hyp.yaml", "opt.yaml", "results.csv", "results.png", "weights/last.pt", "weights/best.pt"):
        assert (d / f).is_file(), f
    if HAS_PLOTS:
        for f in ("labels.jpg", "train_batch0.jpg", "train_batch1.jpg", "train_batch2.jpg"):
            assert (d / f).is_file(), f
    for f in ("last.pt", "best.pt"):
        ck = checkpoint.safe_load(d / "weights" / f)
        assert ck["epoch"] == -1 and ck["optimizer"] is None and ck["ema"] is None and ck["updates"] is None
        assert set(ck["model"]) >= {"yaml", "state_dict", "names", "stride"}
        assert ck["model"]["names"] == {0: "red", 1: "green"}
        assert {"epoch", "best_fitness", "model", "ema", "updates", "optimizer", "opt", "date", "toy"} <= set(ck)
    from models.weights import load_model
    model = load_model(d / "weights" / "best.pt")
    assert model.nc == 2
    assert len(opt.results) == 7


def test_results_csv_columns_and_rows(uninterrupted):
    opt, _, _ = uninterrupted
    cols = results.ResultsCSV(Path(opt.save_dir) / "results.csv").columns()
    assert cols[: len(results.UPSTREAM_COLUMNS)] == list(results.UPSTREAM_COLUMNS)
    assert "train/distill_toy" in cols[len(results.UPSTREAM_COLUMNS):]  # extra terms appended
    table = results.read_results(Path(opt.save_dir) / "results.csv")
    assert table["epoch"].tolist() == [0, 1]
    assert np.isfinite(table["train/box_loss"]).all() and np.isfinite(table["train/distill_toy"]).all()
    # all iterations are in warmup: bias lr falls from 0.1, others rise from 0
    assert table["x/lr0"][0] < 0.1 and table["x/lr1"][0] > 0 and table["x/lr1"][1] > table["x/lr1"][0]


def test_tensorboard_has_every_csv_column_and_the_first_batches(uninterrupted):
    opt, _, _ = uninterrupted
    run_dir = Path(opt.save_dir)
    scalars, images = read_events(run_dir)
    table = results.read_results(run_dir / "results.csv")
    assert set(scalars) == set(table) - {"epoch"}  # every named term (train/distill_toy too), metrics, lrs
    for tag, points in scalars.items():
        assert [s for s, _ in points] == [0, 1], tag
        assert [v for _, v in points] == pytest.approx(table[tag].tolist(), rel=1e-4, abs=1e-6), tag
    if HAS_PLOTS:
        # 2 batches an epoch: iterations 0 and 1 in epoch 0, iteration 2 in epoch 1; each image logged once
        assert images == {"train_batch0": [0], "train_batch1": [0], "train_batch2": [1]}


def test_no_tensorboard_no_writer(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if not installed: import tensorboard fails
    assert not tensorboard.available()
    assert tensorboard.open_writer(tmp_path) is None
    assert not list(tmp_path.iterdir())


def test_step_module_is_optimised_and_saved(uninterrupted):
    opt, saves, step = uninterrupted
    w = step.modules["w"]
    assert 0 < w.item() <= 3.0  # moved from 0 towards 3
    last = saves[-1]
    assert len(last["optimizer"]["param_groups"]) == 4  # bias, decayed, BN + the step's group
    assert torch.allclose(last["toy"]["modules"]["w"], w.detach())
    assert last["epoch"] == 1 and last["updates"] == 4  # 2 epochs x 2 batches, warmup accumulate 1


def test_resume_equals_uninterrupted(data, uninterrupted, tmp_path):
    _, full_saves, _ = uninterrupted
    cb, epochs_started = Callbacks(), []
    cb.register("on_train_epoch_start", lambda: epochs_started.append(1))

    def interrupt(*args, **kwargs):  # Ctrl-C at the first batch of the second epoch
        if len(epochs_started) == 2:
            raise KeyboardInterrupt

    cb.register("on_train_batch_start", interrupt)
    with pytest.raises(KeyboardInterrupt):
        train.run(data=data, epochs=2, project=str(tmp_path), name="part", callbacks=cb,
                  step_factory=lambda ctx: ToyStep(ctx), **COMMON)
    last = tmp_path / "part" / "weights" / "last.pt"
    ck = checkpoint.safe_load(last)
    assert ck["epoch"] == 0 and ck["optimizer"] is not None  # Ctrl-C kept a resumable last.pt
    assert results.read_results(tmp_path / "part" / "results.csv")["epoch"].tolist() == [0]

    saves, steps = [], []
    cb2 = Callbacks()
    cb2.register("on_model_save", _saver(saves))

    def factory(ctx):
        steps.append(ToyStep(ctx))
        return steps[-1]

    opt = train.run(resume=str(last), callbacks=cb2, step_factory=factory)
    assert Path(opt.save_dir) == tmp_path / "part"
    assert torch.equal(steps[0].loaded["w"], ck["toy"]["modules"]["w"])  # step state restored
    a, b = full_saves[-1], saves[-1]
    assert a["epoch"] == b["epoch"] == 1 and a["updates"] == b["updates"]
    ga, gb = a["optimizer"]["param_groups"], b["optimizer"]["param_groups"]
    assert [{k: v for k, v in g.items() if k != "params"} for g in ga] == [
        {k: v for k, v in g.items() if k != "params"} for g in gb]
    # the same weights, EMA, momentum buffers and step module, bit for bit (CPU, 0 workers, fixed seed)
    for key in ("model", "ema"):
        assert a[key]["state_dict"].keys() == b[key]["state_dict"].keys()
        assert all(torch.equal(v, b[key]["state_dict"][k]) for k, v in a[key]["state_dict"].items()), key
        assert all(v.dtype != torch.float16 for v in b[key]["state_dict"].values())  # FP32 until the strip
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert sa.keys() == sb.keys() and all(torch.equal(sa[i]["momentum_buffer"], sb[i]["momentum_buffer"]) for i in sa)
    assert torch.equal(a["toy"]["modules"]["w"], b["toy"]["modules"]["w"])
    # and the same rows: losses, metrics and learning rates of both epochs, written once each
    full_csv = (Path(uninterrupted[0].save_dir) / "results.csv").read_text()
    assert (tmp_path / "part" / "results.csv").read_text() == full_csv
    assert results.read_results(tmp_path / "part" / "results.csv")["epoch"].tolist() == [0, 1]
    with pytest.raises(ValueError, match="nothing to resume"):  # stripped at the end
        train.run(resume=str(last), step_factory=lambda ctx: ToyStep(ctx))


def test_nan_loss_stops_and_keeps_last_good_checkpoint(data, uninterrupted, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    weights = Path(uninterrupted[0].save_dir) / "weights" / "best.pt"
    with pytest.raises(train.NonFiniteLossError, match=r"epoch 1, batch 0"):
        train.run(data=data, epochs=2, project=str(tmp_path), name="nan", noval=True, weights=str(weights),
                  step_factory=lambda ctx: ToyStep(ctx, nan_epoch=1), **COMMON)
    assert any("Transferred" in r.getMessage() and "items from" in r.getMessage() for r in caplog.records)
    ck = checkpoint.safe_load(tmp_path / "nan" / "weights" / "last.pt")
    assert ck["epoch"] == 0 and ck["optimizer"] is not None
    assert all(torch.isfinite(v.float()).all() for v in ck["model"]["state_dict"].values() if v.is_floating_point())


def test_quad_trains_on_quarter_batches_of_twice_the_size(data, tmp_path):
    shapes = []
    cb = Callbacks()
    cb.register("on_train_batch_end", lambda model, i, imgs, targets, paths: shapes.append(tuple(imgs.shape)))
    opt = train.run(data=data, epochs=1, project=str(tmp_path), name="quad", quad=True, noplots=True,
                    callbacks=cb, **COMMON)
    assert shapes == [(1, 3, 128, 128)] * 2  # batch 4 at 64 px -> 1 image at 128 px, 2 batches
    assert np.isfinite(results.read_results(Path(opt.save_dir) / "results.csv")["train/box_loss"]).all()


def test_run_rejects_unknown_options():
    with pytest.raises(TypeError, match="unknown option"):
        train.run(not_an_option=1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_process_gloo(data, tmp_path):
    yaml_file = tmp_path / "synth.yaml"
    import yaml

    yaml_file.write_text(yaml.safe_dump(data))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()),
           str(ROOT / "train.py"), "--data", str(yaml_file), "--cfg", "yolov5n.yaml", "--img", "64", "--epochs", "1",
           "--batch-size", "4", "--workers", "0", "--device", "cpu", "--project", str(tmp_path), "--name", "ddp",
           "--noplots"]
    p = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=150)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert (tmp_path / "ddp" / "weights" / "last.pt").is_file()
    assert not (tmp_path / "ddp2").exists()  # one run directory, chosen by rank 0
    assert results.read_results(tmp_path / "ddp" / "results.csv")["epoch"].tolist() == [0]
