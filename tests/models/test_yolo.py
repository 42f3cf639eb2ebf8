"""The model family against upstream YOLOv5 constants (spec section 1)."""
import math

import pytest
import torch

from models.yolo import Detect, Model, gflops, parse_activation

# size: (params, fused params, layers unfused, layers fused, upstream README GFLOPs)
UPSTREAM = {
    "n": (1_872_157, 1_867_405, 214, 157, 4.5),
    "s": (7_235_389, 7_225_885, 214, 157, 16.5),
    "m": (21_190_557, 21_172_173, 291, 212, 49.0),
    "l": (46_563_709, 46_533_693, 368, 267, 109.1),
    "x": (86_749_405, 86_705_005, 445, 322, 205.7),
}


def n_params(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("size", list(UPSTREAM))
def test_parameter_counts_layers_and_gflops_match_upstream(size):
    params, fused, layers, fused_layers, ref_gflops = UPSTREAM[size]
    model = Model(f"yolov5{size}.yaml")
    assert n_params(model) == params
    assert len(list(model.modules())) == layers
    assert model.stride.tolist() == [8.0, 16.0, 32.0]
    assert model.info().startswith(f"YOLOv5{size} summary: {layers} layers, {params} parameters, {params} gradients")
    assert gflops(model) == pytest.approx(ref_gflops, rel=0.02)
    model.eval().fuse()
    assert n_params(model) == fused
    assert len(list(model.modules())) == fused_layers


def test_nc_changes_only_the_head():
    assert n_params(Model("yolov5s.yaml", nc=1)) == 7_022_326
    assert n_params(Model("yolov5s.yaml", nc=20)) == 7_073_569


def test_output_shapes_train_and_eval_at_640():
    model = Model("yolov5n.yaml")
    x = torch.zeros(1, 3, 640, 640)
    train_out = model.train()(x)
    assert [tuple(t.shape) for t in train_out] == [(1, 3, 80, 80, 85), (1, 3, 40, 40, 85), (1, 3, 20, 20, 85)]
    with torch.no_grad():
        pred, raw = model.eval()(x)
    assert tuple(pred.shape) == (1, 25200, 85)
    assert len(raw) == 3


def test_bn_constants_and_detect_bias_priors():
    model = Model("yolov5s.yaml")
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(m.eps == 1e-3 and m.momentum == 0.03 for m in bns)
    # The prior is added on top of PyTorch's uniform init U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    for conv, stride, obj_prior in zip(model.detect.m, (8, 16, 32), (-6.6846, -5.2983, -3.9120)):
        bound = 1 / math.sqrt(conv.in_channels)
        b = conv.bias.detach().view(3, 85)
        assert ((b[:, 4] - obj_prior).abs() <= bound + 1e-4).all()
        assert ((b[:, 5:] - (-4.8803)).abs() <= bound + 1e-4).all()
        assert math.log(8 / (640 / stride) ** 2) == pytest.approx(obj_prior, abs=1e-4)


def test_anchors_are_stored_in_grid_units():
    det = Model("yolov5n.yaml").detect
    assert det.anchors.shape == (3, 3, 2)
    pixels = det.anchors * det.stride.view(-1, 1, 1)
    assert pixels[0].flatten().tolist() == [10, 13, 16, 30, 33, 23]
    assert pixels[2].flatten().tolist() == [116, 90, 156, 198, 373, 326]


def test_detect_exposes_its_inputs():
    det = Model("yolov5s.yaml").detect
    assert isinstance(det, Detect)
    assert det.f == [17, 20, 23]
    assert det.in_channels == (128, 256, 512)


def test_fuse_matches_unfused_eval_output():
    torch.manual_seed(0)
    model = Model("yolov5n.yaml").eval()
    for m in model.modules():  # non-trivial BN statistics, so folding is really exercised
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    x = torch.rand(2, 3, 256, 320)
    with torch.no_grad():
        ref = model(x)[0]
        fused = model.fuse()(x)[0]
    rel = (fused - ref).abs().max() / ref.abs().max()
    assert rel < 1e-4


def test_no_module_mutates_its_inputs():
    model = Model("yolov5n.yaml").eval()
    captured = []

    def keep_copy(module, args):
        inputs = args[0]
        captured.append((module, inputs, [t.clone() for t in inputs] if isinstance(inputs, list) else inputs.clone()))

    handles = [m.register_forward_pre_hook(keep_copy) for m in model.model]
    with torch.no_grad():
        model(torch.rand(1, 3, 128, 128))
    for h in handles:
        h.remove()
    for module, inputs, snapshot in captured:
        if isinstance(inputs, list):
            assert all(a is not None and torch.equal(a, b) for a, b in zip(inputs, snapshot)), module.type
            assert [t.shape[1] for t in inputs] == [t.shape[1] for t in snapshot]
        else:
            assert torch.equal(inputs, snapshot), module.type


def test_tta_returns_decoded_boxes():
    model = Model("yolov5n.yaml").eval()
    with torch.no_grad():
        pred, _ = model(torch.rand(1, 3, 128, 128), augment=True)
    assert pred.ndim == 3 and pred.shape[-1] == 85


def test_yaml_never_evaluates_code(tmp_path):
    cfg = Model("yolov5n.yaml").yaml
    cfg["backbone"] = [[-1, 1, "__import__('os').system('echo pwned')", [16]]] + cfg["backbone"][1:]
    with pytest.raises(ValueError, match="unknown module"):
        Model(cfg)
    with pytest.raises(ValueError, match="unsupported activation"):
        parse_activation("os.system('echo pwned')")


def test_activation_key_applies_per_model_without_leaking():
    cfg = Model("yolov5n.yaml").yaml
    cfg["activation"] = "nn.LeakyReLU(0.1)"
    leaky = Model(cfg)
    assert isinstance(leaky.model[0].act, torch.nn.LeakyReLU) and leaky.model[0].act.negative_slope == 0.1
    assert isinstance(Model("yolov5n.yaml").model[0].act, torch.nn.SiLU)


def test_fused_weights_are_plain_leaf_tensors():
    model = Model("yolov5n.yaml").eval().fuse()
    fused = [m.conv for m in model.modules() if hasattr(m, "conv") and isinstance(m.conv, torch.nn.Conv2d)]
    assert fused and all(p.is_leaf and p.grad_fn is None for c in fused for p in c.parameters())
