"""FeatureRecorder on a toy detector: the four traps of docs/style.md section 3.3."""
from __future__ import annotations

import copy
import io

import pytest
import torch

from distill.recorder import FeatureRecorder
from tests.distill.toy import ToyDetector


def _imgs():
    return torch.rand(2, 3, 32, 32)


def test_records_only_inside_with():
    model = ToyDetector()
    recorder = FeatureRecorder(model)
    model(_imgs())
    with pytest.raises(RuntimeError, match="recorded nothing"):
        recorder.features
    with recorder:
        model(_imgs())
    assert [f.shape[1:] for f in recorder.features] == [(4, 8, 8), (8, 4, 4)]
    with recorder:  # entering clears the previous batch
        pass
    with pytest.raises(RuntimeError):
        recorder.features


def test_captures_neck_features_not_head_outputs_when_head_mutates_its_input():
    model = ToyDetector(mutate=True)  # head writes x[i] = conv(x[i]) into the list it was given
    recorder = FeatureRecorder(model)
    with recorder:
        preds = model(_imgs())
    channels = [f.shape[1] for f in recorder.features]
    assert channels == [4, 8]  # neck features, not the (na * no) head outputs
    assert preds[0].dim() == 5


def test_layer_index_and_module_path_taps_match_head_inputs():
    model = ToyDetector()
    by_head, by_index = FeatureRecorder(model), FeatureRecorder(model, layers=[1, 2])
    by_path = FeatureRecorder(model, paths=["module.model.1", "model.2"])  # DDP prefix tolerated
    imgs = _imgs()
    with by_head, by_index, by_path:
        model(imgs)
    for a, b, c in zip(by_head.features, by_index.features, by_path.features):
        assert torch.equal(a, b) and torch.equal(a, c)


def test_unknown_module_path_raises():
    with pytest.raises(KeyError, match="model.99"):
        FeatureRecorder(ToyDetector(), paths=["model.99"])


def test_teacher_features_detached_student_features_keep_graph():
    model = ToyDetector()
    student, teacher = FeatureRecorder(model), FeatureRecorder(model, detach=True)
    with student, teacher:
        model(_imgs())
    assert all(f.grad_fn is not None for f in student.features)
    assert all(not f.requires_grad for f in teacher.features)


def test_deepcopied_model_does_not_write_into_original_store():
    model = ToyDetector()
    recorder = FeatureRecorder(model)
    ema_copy = copy.deepcopy(model)  # what ModelEMA does
    with recorder:
        ema_copy(_imgs())  # e.g. validation of the EMA model while the recorder is active
        with pytest.raises(RuntimeError, match="recorded nothing"):
            recorder.features
        model(_imgs())
    assert len(recorder.features) == 2


def test_pickling_needs_close_and_works_after_it():
    model = ToyDetector()
    recorder = FeatureRecorder(model)
    with recorder:
        model(_imgs())
    with pytest.raises(TypeError, match="recorder.close"):
        torch.save(model, io.BytesIO())
    recorder.close()
    assert not model.detect._forward_pre_hooks
    buffer = io.BytesIO()
    torch.save(model, buffer)  # the whole module pickles, without the recorder or its buffers
    assert buffer.tell() > 0
    with pytest.raises(RuntimeError, match="closed"):  # a closed recorder cannot be reused silently
        with recorder:
            pass
