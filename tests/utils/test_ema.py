"""ModelEMA: decay ramp, floating-point-only updates, eval copy without grads."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from utils.ema import ModelEMA, ema_decay


def test_decay_formula():
    assert ema_decay(0) == 0.0
    assert ema_decay(1) == pytest.approx(0.9999 * (1 - math.exp(-1 / 2000)))
    assert ema_decay(2000) == pytest.approx(0.9999 * (1 - math.exp(-1)))
    assert ema_decay(10**7) == pytest.approx(0.9999)


def test_update_matches_formula_for_params_and_bn_buffers():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    ema = ModelEMA(model)
    assert not ema.ema.training and not any(p.requires_grad for p in ema.ema.parameters())
    before = {k: v.clone() for k, v in ema.ema.state_dict().items()}
    model.train()
    model(torch.randn(2, 3, 8, 8))  # moves BN running stats and num_batches_tracked
    with torch.no_grad():
        model[0].weight.add_(1.0)
    ema.update(model)
    ema.update(model)
    d1, d2 = ema_decay(1), ema_decay(2)
    msd = model.state_dict()
    for k, v in ema.ema.state_dict().items():
        if v.dtype.is_floating_point:
            once = d1 * before[k] + (1 - d1) * msd[k]
            assert torch.allclose(v, d2 * once + (1 - d2) * msd[k], atol=1e-6), k
    assert ema.ema.state_dict()["1.num_batches_tracked"].item() == 0  # integer buffer untouched
    assert msd["1.num_batches_tracked"].item() == 1
    assert ema.updates == 2


def test_update_attr_copies_plain_attributes():
    model = nn.Linear(2, 2)
    model.names = {0: "a"}
    model.nc = 1
    ema = ModelEMA(model)
    model.names = {0: "b"}
    ema.update_attr(model)
    assert ema.ema.names == {0: "b"} and ema.ema.nc == 1
