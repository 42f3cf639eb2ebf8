"""KDConfig: presets, validation, schedules and round trips."""
from __future__ import annotations

import dataclasses
import math

import pytest

from distill.config import DEFAULT_WEIGHTS, KDConfig


def test_fgd_presets_fill_unset_options_and_explicit_values_win():
    official = KDConfig(methods=("fgd",))
    assert (official.fgd_temperature, official.fgd_alpha, official.fgd_beta, official.fgd_gamma,
            official.fgd_lambda) == (0.5, 1e-3, 5e-4, 5e-4, 5e-6)
    yolox = KDConfig(methods=("fgd",), fgd_preset="yolox", fgd_alpha=0.1)
    assert (yolox.fgd_alpha, yolox.fgd_beta, yolox.fgd_gamma, yolox.fgd_lambda) == (0.1, 1e-3, 1e-3, 1e-5)


def test_defaults_weights_and_frozen():
    config = KDConfig(methods=("fgfi", "cilf", "fgd", "fgfi"))
    assert config.methods == ("fgfi", "cilf", "fgd")
    assert (config.method_weight("fgfi"), config.method_weight("cilf"), config.method_weight("fgd")) == (0.001, 0.03, 0.03)
    assert KDConfig(weight=0.5).method_weight("fgfi") == 0.5
    assert (config.fgfi_psi, config.cilf_alpha, config.cilf_temperature) == (0.5, 1.0, 3.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.weight = 1.0


@pytest.mark.parametrize("bad", [dict(methods=("mgd",)), dict(methods=()), dict(fgfi_assign="nearest"),
                                 dict(cilf_kl="softmax"), dict(cilf_alpha=1.5), dict(fgd_preset="fcos"),
                                 dict(cilf_temperature=0.0)])
def test_invalid_options_raise(bad):
    with pytest.raises(ValueError):
        KDConfig(**bad)


def test_schedule_keys_on_global_iteration_and_epoch():
    config = KDConfig(start_iter=10, stop_epoch=3)
    assert not config.active(epoch=0, iteration=9)
    assert config.active(epoch=1, iteration=10) and config.active(epoch=2, iteration=500)
    assert not config.active(epoch=3, iteration=10_000)
    assert KDConfig().active(epoch=10**6, iteration=0)


def test_dict_round_trip():
    config = KDConfig(methods=("cilf", "fgd"), layers=[17, 20], fgd_preset="yolox", stop_epoch=5)
    data = config.to_dict()
    assert data["methods"] == ["cilf", "fgd"] and data["layers"] == [17, 20] and data["fgd_alpha"] == 2e-3
    assert KDConfig.from_dict(data) == config
    with pytest.raises(ValueError, match="unknown"):
        KDConfig.from_dict({**data, "kd_magic": 1})


def test_per_method_weights_win_over_the_common_weight_and_round_trip():
    config = KDConfig(methods=("fgfi", "fgd"), weight=0.5, method_weights=(("fgd", 0.05),))
    assert (config.method_weight("fgfi"), config.method_weight("fgd")) == (0.5, 0.05)
    assert KDConfig(methods=("fgfi", "fgd"), method_weights=(("fgfi", 0.0025),)).method_weight("fgd") == DEFAULT_WEIGHTS["fgd"]
    assert KDConfig.from_dict(config.to_dict()) == config
    assert config.to_dict()["method_weights"] == {"fgd": 0.05}
    old = {k: v for k, v in config.to_dict().items() if k != "method_weights"}  # a checkpoint from before the field
    assert KDConfig.from_dict(old).method_weights == ()
    with pytest.raises(ValueError, match="cilf"):
        KDConfig(methods=("fgfi",), method_weights=(("cilf", 0.1),))


def test_old_warmup_iters_key_still_loads_and_one_methods_default():
    """kd.yaml / checkpoints written before the rename carry ``warmup_iters``: it is KD's start iteration."""
    data = KDConfig(methods=("fgfi",), start_iter=7).to_dict()
    assert "warmup_iters" not in data and data["start_iter"] == 7
    data["warmup_iters"] = data.pop("start_iter")
    assert KDConfig.from_dict(data).start_iter == 7
    assert KDConfig().methods == ("fgd",)  # the one default, also train_kd.py's --kd default


def test_registry_names_the_config_methods_in_term_order():
    from distill.config import METHODS as NAMES
    from distill.methods import METHODS, Method

    assert tuple(METHODS) == NAMES and all(issubclass(cls, Method) and cls.name == n for n, cls in METHODS.items())
    terms = [t for cls in METHODS.values() for t in cls.term_names]
    assert terms[:13] == [
        "distill/fgfi", "distill/kl", "distill/mse", "distill/fgd_fg", "distill/fgd_bg", "distill/fgd_at",
        "distill/fgd_glb", "distill/cwd_p3", "distill/cwd_p4", "distill/cwd_p5", "distill/pkd_p3", "distill/pkd_p4",
        "distill/pkd_p5"]
    assert terms[-3:] == ["distill/ogd_box", "distill/ogd_cls", "distill/ogd_obj"]  # after the older methods


def test_cosine_decay_factor_from_the_kd_start_to_the_floor_at_the_last_iteration():
    assert KDConfig().decay_factor(123, None) == 1.0  # "none": today's behaviour, no run length needed
    cosine = KDConfig(decay="cosine")  # floor 0, KD from iteration 0, 11 iterations: the last is 10
    assert [round(cosine.decay_factor(i, 11), 12) for i in (0, 5, 10, 50)] == [1.0, 0.5, 0.0, 0.0]
    assert round(cosine.decay_factor(2, 11), 12) == round(0.5 * (1 + math.cos(math.pi * 0.2)), 12)  # 0.904508...
    late = KDConfig(decay="cosine", decay_min=0.2, start_iter=4)  # counted from the KD start: 4..14
    assert [round(late.decay_factor(i, 15), 12) for i in (0, 4, 9, 14)] == [1.0, 1.0, 0.6, 0.2]
    assert KDConfig.from_dict(late.to_dict()) == late
    for bad in (dict(decay="linear"), dict(decay="cosine", decay_min=1.5)):
        with pytest.raises(ValueError, match="decay"):
            KDConfig(**bad)
    with pytest.raises(ValueError, match="total_iters"):
        cosine.decay_factor(0, None)
