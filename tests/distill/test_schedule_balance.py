"""DistillStep's --kd-decay schedule and --kd-balance calibration, on real tiny-input YOLOv5 models."""
from __future__ import annotations

import math
import socket
from types import SimpleNamespace

import torch
import torch.distributed as torch_dist
import torch.multiprocessing as mp
import yaml

from distill import teacher as kd_teacher
from distill.balance import Balance
from distill.config import KDConfig
from distill.step import DistillStep
from models.yolo import Model
from tests.distill.test_step import IMGSZ, _batch, hyp, teacher_file  # noqa: F401 - fixtures
from utils.loss import ComputeLoss


def _step(teacher_file, hyp, **kwargs):
    torch.manual_seed(0)
    student = Model("yolov5n.yaml", nc=2).train()
    step_args = {k: kwargs.pop(k) for k in ("warmup_iters", "total_iters", "balance_path") if k in kwargs}
    config = KDConfig(**{"methods": ("fgfi", "fgd"), **kwargs})
    loss = ComputeLoss(student.detect, hyp, nc=2, imgsz=IMGSZ)
    return student, DistillStep(student, kd_teacher.load_teacher(teacher_file), loss, config, IMGSZ, **step_args)


def test_cosine_decay_scales_every_kd_term_and_leaves_detection_alone(teacher_file, hyp):
    imgs, targets = _batch()
    student, plain = _step(teacher_file, hyp)
    with torch.no_grad():
        _, reference = plain(student, imgs, targets, epoch=0, iteration=5)
    plain.close()
    student, decayed = _step(teacher_file, hyp, decay="cosine", total_iters=11)  # same seeds: same weights
    with torch.no_grad():
        _, terms = decayed(student, imgs, targets, epoch=0, iteration=5)  # half way: factor 0.5
    for name, value in reference.items():
        expected = value * 0.5 if name.startswith("distill/") else value
        assert torch.allclose(terms[name], expected, rtol=1e-5), name
    assert math.isclose(decayed.config.decay_factor(10, 11), 0.0, abs_tol=1e-12)


def _fake(name, weight, term_names):
    return SimpleNamespace(name=name, weight=weight, term_names=term_names)


def test_balance_helper_picks_ratio_times_detection_over_the_unweighted_term(tmp_path):
    """Known magnitudes: only the window (the last 20 of 25 warmup iterations) counts."""
    a, b, z = _fake("fgfi", 0.5, ("a1", "a2")), _fake("fgd", 2.0, ("b1",)), _fake("cwd", 0.1, ("z1",))
    config = SimpleNamespace(balance=(("fgfi", 1.0), ("fgd", 0.5), ("cwd", 0.3)))
    balance = Balance([a, b, z], config, warmup_iters=25, device=torch.device("cpu"), path=tmp_path / "b.yaml")
    assert (balance.start, balance.end) == (5, 25)
    t = lambda v: torch.tensor(float(v))  # noqa: E731
    for iteration in range(25):
        det = 100.0 if iteration < 5 else (2.0 if iteration < 15 else 4.0)  # window mean 3.0
        unweighted_a = 1.0 if iteration % 2 else 2.0  # window mean 1.5, split over two terms
        detection = {"task/box": t(det / 2), "task/obj": t(det / 4), "task/cls": t(det / 4)}
        kd = {"a1": t(0.5 * unweighted_a / 3), "a2": t(0.5 * unweighted_a * 2 / 3), "b1": t(2.0 * 6.0), "z1": t(0)}
        balance.add(detection, kd, iteration)
    balance.finish(24)
    assert math.isclose(a.weight, 1.0 * 3.0 / 1.5, rel_tol=1e-6)  # 2.0
    assert math.isclose(b.weight, 0.5 * 3.0 / 6.0, rel_tol=1e-6)  # 0.25
    assert z.weight == 0.1  # zero during calibration: keeps its weight
    record = yaml.safe_load((tmp_path / "b.yaml").read_text())
    assert record["kept"] == ["cwd"] and record["samples"] == 20 and math.isclose(record["detection"], 3.0)
    assert math.isclose(record["weights"]["fgfi"], 2.0, rel_tol=1e-6) and record["weights"]["cwd"] == 0.1
    short = Balance([_fake("fgd", 1.0, ("b1",))], config, warmup_iters=3, device=torch.device("cpu"))
    assert (short.start, short.end) == (0, 3)  # warmup shorter than 20: all of it


def test_step_calibrates_at_the_end_of_warmup_then_keeps_the_weights(teacher_file, hyp, caplog):
    """fgd balanced to R=0.5 after a 3-iteration warmup: from then on its weighted sum is 0.5 x detection."""
    imgs, targets = _batch()
    student, step = _step(teacher_file, hyp, balance=(("fgd", 0.5),), warmup_iters=3)
    fgd = [m for m in step.methods if m.name == "fgd"][0]
    fgd_names = [n for n in step.term_names if n.startswith("distill/fgd")]
    det, unweighted = [], []
    with torch.no_grad(), caplog.at_level("INFO"):
        for iteration in range(3):
            _, terms = step(student, imgs, targets, epoch=0, iteration=iteration)
            det.append(float(terms["task/box"] + terms["task/obj"] + terms["task/cls"]))
            unweighted.append(float(sum(terms[n] for n in fgd_names)) / 0.03)  # fgd's default weight
        expected = 0.5 * (sum(det) / 3) / (sum(unweighted) / 3)
        assert math.isclose(fgd.weight, expected, rel_tol=1e-5) and step.balance.done
        chosen = fgd.weight
        assert [m.weight for m in step.methods if m.name == "fgfi"] == [0.001]  # not balanced: unchanged
        _, after = step(student, imgs, targets, epoch=0, iteration=3)
        _, later = step(student, imgs, targets, epoch=0, iteration=50)
    kd_after = float(sum(after[n] for n in fgd_names))
    assert math.isclose(kd_after, fgd.weight * unweighted[-1], rel_tol=1e-4)
    assert fgd.weight == chosen  # fixed afterwards, no per-step renormalising
    assert torch.allclose(sum(later[n] for n in fgd_names), sum(after[n] for n in fgd_names))
    assert "chosen weights fgd" in caplog.text

    state = step.state_dict()  # resume after calibration: weights restored, no second calibration
    step.close()
    student, resumed = _step(teacher_file, hyp, balance=(("fgd", 0.5),), warmup_iters=3)
    resumed.load_state_dict(state)
    assert resumed.balance.done and [m.weight for m in resumed.methods] == [0.001, fgd.weight]
    with torch.no_grad():
        resumed(student, imgs, targets, epoch=0, iteration=2)  # would finish the window of a fresh step
    assert [m.weight for m in resumed.methods] == [0.001, fgd.weight]
    old = {k: v for k, v in state.items() if k != "balance"}  # a checkpoint from before --kd-balance
    resumed.close()
    _, fresh = _step(teacher_file, hyp, balance=(("fgd", 0.5),), warmup_iters=3)
    fresh.load_state_dict(old)
    assert not fresh.balance.done and [m.weight for m in fresh.methods] == [0.001, 0.03]
    fresh.close()
    _, plain = _step(teacher_file, hyp)
    plain.load_state_dict(old)
    assert "balance" not in plain.state_dict() and plain.balance is None  # flag off: state as before


def test_zero_term_keeps_its_default_weight(teacher_file, hyp, caplog):
    """Empty targets: FGFI's imitation term is 0 during calibration, FGD's background term is not."""
    imgs, _ = _batch()
    student, step = _step(teacher_file, hyp, balance=(("fgfi", 0.5), ("fgd", 0.5)), warmup_iters=1)
    with torch.no_grad(), caplog.at_level("INFO"):
        step(student, imgs, torch.zeros(0, 6), epoch=0, iteration=0)
    weights = {m.name: m.weight for m in step.methods}
    assert weights["fgfi"] == 0.001 and weights["fgd"] != 0.03 and step.balance.done
    assert "fgfi: its term was zero" in caplog.text


def _ddp_worker(rank: int, port: int, out) -> None:
    torch_dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    method = _fake("fgd", 1.0, ("b1",))
    balance = Balance([method], SimpleNamespace(balance=(("fgd", 1.0),)), 1, torch.device("cpu"))
    det = 2.0 if rank == 0 else 4.0  # ranks disagree; their mean is 3 over a term of 1.5
    balance.add({"task/box": torch.tensor(det)}, {"b1": torch.tensor(1.0 + rank)}, 0)
    balance.finish(0)
    out.put((rank, method.weight))
    torch_dist.destroy_process_group()


def test_balance_averages_the_calibration_sums_over_ranks():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    context = mp.get_context("fork")  # no re-import of the test module: fast
    out = context.Queue()
    workers = [context.Process(target=_ddp_worker, args=(rank, port, out)) for rank in range(2)]
    for worker in workers:
        worker.start()
    try:
        results = dict(out.get(timeout=60) for _ in workers)
    finally:
        for worker in workers:
            worker.join(timeout=10)
            if worker.is_alive():
                worker.terminate()
    assert results == {0: 2.0, 1: 2.0}  # 1.0 * 3 / 1.5 on both ranks


def test_balance_resumed_inside_the_window_chooses_the_weights_of_an_uninterrupted_one():
    """A checkpoint written during the calibration window keeps its sums (issue 23: exact resume)."""
    config = KDConfig(methods=("fgd",), balance=(("fgd", 0.5),))
    t = torch.tensor

    def run(balance, iterations):
        for i in iterations:
            balance.add({"task/box": t(1.0 + i)}, {"b1": t(0.01 * (i + 1) ** 2)}, i)

    whole, part = (Balance([_fake("fgd", 1.0, ("b1",))], config, warmup_iters=10, device=torch.device("cpu"))
                   for _ in range(2))
    run(whole, range(10))
    whole.finish(9)
    run(part, range(6))
    state = part.state_dict()
    assert not state["done"] and state["sums"].tolist()[0] == 6
    resumed = Balance([_fake("fgd", 1.0, ("b1",))], config, warmup_iters=10, device=torch.device("cpu"))
    resumed.load_state_dict(state)
    run(resumed, range(6, 10))
    resumed.finish(9)
    assert resumed.weights == whole.weights and "sums" not in resumed.state_dict()
