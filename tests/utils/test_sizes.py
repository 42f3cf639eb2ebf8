"""utils.sizes.check_img_size: train.py's rounding (floor 2 * stride, warning) and the scripts' variants."""
import logging

import pytest

from utils import sizes


@pytest.mark.parametrize("imgsz, stride, new", [(640, 32, 640), (641, 32, 672), (100, 32, 128), (32, 32, 64),
                                                (1, 32, 64), (330, 64, 384), (320, 16, 320)])
def test_train_semantics_round_up_with_floor_two_strides(imgsz, stride, new):
    assert sizes.check_img_size(imgsz, stride) == new


def test_warning_text_only_when_changed(caplog):
    with caplog.at_level(logging.WARNING):
        assert sizes.check_img_size(640, 32) == 640
    assert not caplog.records
    with caplog.at_level(logging.WARNING):
        assert sizes.check_img_size(641, 32) == 672
    assert caplog.messages == ["WARNING: --img-size 641 must be multiple of max stride 32, updating to 672"]


def test_sequences_floor_and_silent_mode(caplog):
    with caplog.at_level(logging.WARNING):
        assert sizes.check_img_size((641, 100), 32, floor=32) == [672, 128]  # detect.py: (h, w), floor = stride
        assert sizes.check_img_size([20], 32, floor=32) == [32]
        assert sizes.check_img_size([641, 20], 64, floor=0, warn=False) == [704, 64]  # export.py
        assert sizes.check_img_size(650, 32, floor=0, warn=False) == 672  # val.py
    assert caplog.messages == ["WARNING: --img-size [641, 100] must be multiple of max stride 32, updating to [672, 128]",
                               "WARNING: --img-size [20] must be multiple of max stride 32, updating to [32]"]
