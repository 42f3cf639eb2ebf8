"""Parameter groups, weight-decay scaling, LR lambdas and warmup values at chosen iterations."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from utils import optim

HYP = {"lr0": 0.01, "lrf": 0.01, "momentum": 0.937, "weight_decay": 0.0005, "warmup_epochs": 3.0,
       "warmup_momentum": 0.8, "warmup_bias_lr": 0.1}


def toy():
    return nn.Sequential(nn.Conv2d(3, 8, 3, bias=False), nn.BatchNorm2d(8), nn.SiLU(),
                         nn.Conv2d(8, 4, 1), nn.LayerNorm([4, 1, 1]), nn.Linear(1, 2))


def test_param_groups_order_and_membership():
    m = toy()
    biases, decayed, norms = optim.param_groups(m)
    ids = lambda ps: {id(p) for p in ps}  # noqa: E731
    assert ids(biases) == ids([m[1].bias, m[3].bias, m[4].bias, m[5].bias])
    assert ids(norms) == ids([m[1].weight, m[4].weight])
    assert ids(decayed) == ids([m[0].weight, m[3].weight, m[5].weight])
    assert len(biases) + len(decayed) + len(norms) == len(list(m.parameters()))


@pytest.mark.parametrize("name,cls", [("SGD", torch.optim.SGD), ("Adam", torch.optim.Adam), ("AdamW", torch.optim.AdamW)])
def test_build_optimizer_groups(name, cls):
    m = toy()
    opt = optim.build_optimizer(m, name, lr=0.01, momentum=0.937, decay=0.0005)
    assert isinstance(opt, cls) and len(opt.param_groups) == 3
    g0, g1, g2 = opt.param_groups
    assert len(g0["params"]) == 4 and len(g1["params"]) == 3 and len(g2["params"]) == 2
    assert g0["weight_decay"] == 0.0 and g1["weight_decay"] == 0.0005 and g2["weight_decay"] == 0.0
    if name == "SGD":
        assert g0["nesterov"] is True and g0["momentum"] == 0.937
    else:
        assert g0["betas"] == (0.937, 0.999)


def test_unknown_optimizer_raises():
    with pytest.raises(NotImplementedError):
        optim.build_optimizer(toy(), "Lion")


def test_weight_decay_scaling_and_accumulate():
    assert optim.accumulate_steps(16) == 4 and optim.accumulate_steps(128) == 1 and optim.accumulate_steps(24) == 3
    assert optim.scaled_weight_decay(0.0005, 16, 4) == pytest.approx(0.0005)
    assert optim.scaled_weight_decay(0.0005, 24, 3) == pytest.approx(0.0005 * 72 / 64)
    assert optim.scaled_weight_decay(0.0005, 8, 1) == pytest.approx(0.0005 / 8)


def test_lambdas():
    lf = optim.linear_lambda(100, 0.01)
    assert lf(0) == pytest.approx(1.0) and lf(100) == pytest.approx(0.01) and lf(50) == pytest.approx(0.505)
    cf = optim.cosine_lambda(100, 0.1)
    assert cf(0) == pytest.approx(1.0) and cf(100) == pytest.approx(0.1) and cf(50) == pytest.approx(0.55)
    assert cf(25) == pytest.approx(((1 - math.cos(math.pi / 4)) / 2) * (0.1 - 1) + 1)


def test_scheduler_resume_position():
    m = toy()
    opt = optim.build_optimizer(m, "SGD", lr=0.01)
    sched, lf = optim.build_scheduler(opt, epochs=10, lrf=0.01)
    for _ in range(3):
        opt.step()
        sched.step()
    # upstream quirk kept: last_epoch starts at start_epoch - 1, so after k epoch-end steps lr = lr0 * lf(k - 1)
    assert opt.param_groups[1]["lr"] == pytest.approx(0.01 * lf(2))
    sched.step()
    assert opt.param_groups[1]["lr"] == pytest.approx(0.01 * lf(3))
    opt2 = optim.build_optimizer(toy(), "SGD", lr=0.01)
    sched2, _ = optim.build_scheduler(opt2, epochs=10, lrf=0.01, start_epoch=3)
    sched2.step()  # a run resumed at epoch 3 steps to the same position as the uninterrupted one
    assert opt2.param_groups[1]["lr"] == pytest.approx(0.01 * lf(3))


def test_warmup_values_at_chosen_iterations():
    m = toy()
    opt = optim.build_optimizer(m, "SGD", lr=0.01, momentum=0.937)
    _, lf = optim.build_scheduler(opt, epochs=10, lrf=0.01)
    nw = optim.warmup_iterations(3.0, 13)
    assert nw == 100 and optim.warmup_iterations(3.0, 50) == 150
    optim.warmup(opt, 0, nw, lf(0), HYP)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.1, 0.0, 0.0])
    assert all(g["momentum"] == pytest.approx(0.8) for g in opt.param_groups)
    optim.warmup(opt, 25, nw, lf(1), HYP)
    target = 0.01 * lf(1)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 + 0.25 * (target - 0.1))
    assert opt.param_groups[1]["lr"] == pytest.approx(0.25 * target)
    assert opt.param_groups[2]["momentum"] == pytest.approx(0.8 + 0.25 * 0.137)
    optim.warmup(opt, nw, nw, lf(2), HYP)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.01 * lf(2)] * 3)
    assert opt.param_groups[0]["momentum"] == pytest.approx(0.937)


def test_warmup_accumulate_ramp():
    assert optim.warmup_accumulate(0, 100, 16) == 1
    assert optim.warmup_accumulate(50, 100, 16) == 2  # 2.5 rounds half to even
    assert optim.warmup_accumulate(100, 100, 16) == 4
    assert optim.warmup_accumulate(100, 100, 128) == 1


def test_add_module_group():
    opt = optim.build_optimizer(toy(), "SGD", lr=0.01)
    extra = nn.Conv2d(2, 2, 1)
    optim.add_module_group(opt, extra.parameters(), decay=0.0005)
    assert len(opt.param_groups) == 4 and len(opt.param_groups[3]["params"]) == 2
    assert opt.param_groups[3]["lr"] == 0.01
