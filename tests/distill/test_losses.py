"""KD losses against slow loop references written here from the spec, plus invariants and gradients."""
from __future__ import annotations

import math

import torch

from distill import losses, masks
from tests.distill.toy import toy_targets


def _feats(batch=2, channels=3, height=4, width=5, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, channels, height, width, generator=generator),
            torch.randn(batch, channels, height, width, generator=generator))


def _mask(batch=2, height=4, width=5, seed=1):
    return (torch.rand(batch, 1, height, width, generator=torch.Generator().manual_seed(seed)) > 0.6).float()


def test_fgfi_loss_matches_loop_reference():
    student, teacher = _feats()
    mask = _mask()
    total, positions = 0.0, 0
    for b in range(2):
        for i in range(4):
            for j in range(5):
                if mask[b, 0, i, j]:
                    positions += 1
                    total += sum((student[b, c, i, j].item() - teacher[b, c, i, j].item()) ** 2 for c in range(3))
    expected = total / (2 * max(positions, 1))
    got = losses.fgfi_loss([student], [teacher], [mask])
    assert math.isclose(got.item(), expected, rel_tol=1e-5)
    assert math.isclose(losses.masked_mse(student, teacher, mask).item(), 2 * expected, rel_tol=1e-5)  # CILF: no 1/2


def test_empty_targets_give_zero_finite_imitation_loss_and_gradient():
    student, teacher = _feats()
    student.requires_grad_(True)
    empty = masks.fgfi_masks(torch.zeros(0, 6), torch.ones(1, 2, 2), [(4, 5)], 2)
    loss = losses.fgfi_loss([student], [teacher], empty) + losses.masked_mse(student, teacher, empty[0])
    outputs = torch.randn(2, 2, 4, 5, 7, requires_grad=True)
    loss = loss + losses.output_kl_loss([outputs], [torch.randn(2, 2, 4, 5, 7)], empty)
    loss = loss + losses.feature_kl_loss([student], [teacher], empty)
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(student.grad).all() and torch.isfinite(outputs.grad).all()


def test_bernoulli_kl_of_identical_logits_is_zero_with_zero_gradient():
    logits = torch.randn(2, 3, 4, 4, 7) * 5
    student = logits.clone().requires_grad_(True)
    kl = losses.bernoulli_kl(student, logits, temperature=3.0)
    assert torch.allclose(kl, torch.zeros_like(kl), atol=1e-6)
    kl.sum().backward()
    assert torch.allclose(student.grad, torch.zeros_like(student.grad), atol=1e-6)
    mask = torch.ones(2, 1, 4, 4)
    assert losses.output_kl_loss([logits], [logits], [mask]).abs() < 1e-6


def test_bernoulli_kl_matches_probability_formula_and_is_stable():
    student, teacher = torch.randn(50, dtype=torch.float64) * 3, torch.randn(50, dtype=torch.float64) * 3
    temperature = 2.0
    got = losses.bernoulli_kl(student, teacher, temperature)
    for k in range(50):
        p_s = 1 / (1 + math.exp(-student[k].item() / temperature))
        p_t = 1 / (1 + math.exp(-teacher[k].item() / temperature))
        expected = (p_t * math.log(p_t / p_s) + (1 - p_t) * math.log((1 - p_t) / (1 - p_s))) * temperature ** 2
        assert math.isclose(got[k].item(), expected, rel_tol=1e-4, abs_tol=1e-6)
    extreme = losses.bernoulli_kl(torch.tensor([100.0, -100.0]), torch.tensor([-100.0, 100.0]), 1.0)
    assert torch.allclose(extreme, torch.tensor([100.0, 100.0]))  # log(1 - p_s) = -100, no inf


def test_output_kl_loss_matches_loop_reference_normalised_by_positions_times_anchors():
    torch.manual_seed(0)
    student, teacher = torch.randn(2, 3, 4, 5, 8), torch.randn(2, 3, 4, 5, 8)  # nc = 3
    mask, temperature = _mask(), 3.0
    total = 0.0
    for b, a, i, j in torch.cartesian_prod(*(torch.arange(n) for n in (2, 3, 4, 5))).tolist():
        if mask[b, 0, i, j]:
            for c in range(4, 8):  # objectness and classes, not the box
                p_s = torch.sigmoid(student[b, a, i, j, c] / temperature).item()
                p_t = torch.sigmoid(teacher[b, a, i, j, c] / temperature).item()
                total += (p_t * math.log(p_t / p_s) + (1 - p_t) * math.log((1 - p_t) / (1 - p_s))) * temperature ** 2
    expected = total / (mask.sum().item() * 3)
    got = losses.output_kl_loss([student], [teacher], [mask], temperature)
    assert math.isclose(got.item(), expected, rel_tol=1e-4)


def test_feature_kl_is_channel_softmax_at_masked_positions():
    student, teacher = _feats(channels=6)
    mask, temperature = _mask(), 3.0
    total = 0.0
    for b in range(2):
        for i in range(4):
            for j in range(5):
                if mask[b, 0, i, j]:
                    p_s = torch.softmax(student[b, :, i, j] / temperature, 0)  # over channels at one position
                    p_t = torch.softmax(teacher[b, :, i, j] / temperature, 0)
                    total += (p_t * (p_t / p_s).log()).sum().item() * temperature ** 2
    expected = total / mask.sum().item()
    assert math.isclose(losses.feature_kl_loss([student], [teacher], [mask], temperature).item(), expected,
                        rel_tol=1e-4)
    assert losses.feature_kl_loss([teacher], [teacher], [mask]).abs() < 1e-6


def _reference_fgd_terms(module, student, teacher, fg, bg):
    """Spec section 6 with loops over images and the official sqrt formulation of the focal terms."""
    temperature = module.temperature
    batch, channels, height, width = teacher.shape
    student = module.align(student) if module.align is not None else student
    terms = {"fg": 0.0, "bg": 0.0, "at": 0.0, "glb": 0.0}
    for b in range(batch):
        att = {}
        for name, feat in (("s", student[b]), ("t", teacher[b])):
            spatial = torch.softmax((feat.abs().mean(0) / temperature).flatten(), 0).view(height, width)
            channel = torch.softmax(feat.abs().mean((1, 2)) / temperature, 0)
            att[name] = (height * width * spatial, channels * channel)
        weight = att["t"][0].sqrt()[None] * att["t"][1].sqrt()[:, None, None]
        for key, m in (("fg", fg[b]), ("bg", bg[b])):
            terms[key] += ((student[b] * weight * m.sqrt() - teacher[b] * weight * m.sqrt()) ** 2).sum().item()
        terms["at"] += ((att["s"][1] - att["t"][1]).abs().sum() + (att["s"][0] - att["t"][0]).abs().sum()).item()
        relations = []
        for feat, conv_mask, add in ((student[b], module.conv_mask_s, module.channel_add_conv_s),
                                     (teacher[b], module.conv_mask_t, module.channel_add_conv_t)):
            logits = conv_mask(feat[None])[0, 0].flatten()
            weights = torch.softmax(logits, 0)
            context = torch.zeros(channels)
            for p in range(height * width):
                context += weights[p] * feat.flatten(1)[:, p]
            relations.append(feat + add(context.view(1, channels, 1, 1))[0])
        terms["glb"] += ((relations[0] - relations[1]) ** 2).sum().item()
    scale = {"fg": module.alpha, "bg": module.beta, "at": module.gamma, "glb": module.lambda_glb}
    return {k: v * scale[k] / batch for k, v in terms.items()}


def test_fgd_terms_match_loop_reference_with_trained_context_branches():
    torch.manual_seed(0)
    module = losses.FGDLoss(4, 6, temperature=0.5, alpha=1.0, beta=0.5, gamma=0.3, lambda_glb=0.2)
    with torch.no_grad():  # move the zero-initialised last convs so the global term is non-trivial
        for branch in (module.channel_add_conv_s, module.channel_add_conv_t):
            branch[-1].weight.normal_()
    student, teacher = torch.randn(3, 4, 6, 7), torch.randn(3, 6, 6, 7)
    fg, bg = masks.fgd_masks(toy_targets(), (6, 7), 3)
    got = module(student, teacher, fg, bg)
    with torch.no_grad():
        expected = _reference_fgd_terms(module, student, teacher, fg, bg)
    for key in ("fg", "bg", "at", "glb"):
        assert math.isclose(got[key].item(), expected[key], rel_tol=1e-4), key


def test_fgd_module_names_shapes_init_and_alignment():
    module = losses.FGDLoss(4, 6)
    assert module.align is not None and module.align.weight.shape == (6, 4, 1, 1)
    names = {n for n, _ in module.named_parameters()}
    assert {"align.weight", "align.bias", "conv_mask_s.weight", "conv_mask_t.bias",
            "channel_add_conv_s.0.weight", "channel_add_conv_s.1.weight", "channel_add_conv_s.3.bias",
            "channel_add_conv_t.3.weight"} <= names
    assert module.channel_add_conv_t[1].weight.shape == (3, 1, 1)
    assert torch.all(module.channel_add_conv_s[3].weight == 0) and torch.all(module.conv_mask_t.bias == 0)
    assert losses.FGDLoss(6, 6).align is None
    feat = torch.randn(2, 6, 3, 3)  # R(F) = F at initialisation
    assert torch.equal(module._global_context(feat, module.conv_mask_t, module.channel_add_conv_t), feat)


def test_kd_only_loss_reaches_student_and_not_teacher():
    """Pitfall 4: a KD loss computed with grad enabled gives the student a non-zero gradient."""
    student, teacher = _feats(channels=4)
    student.requires_grad_(True)
    teacher_source = teacher.clone().requires_grad_(True)
    with torch.no_grad():
        teacher = teacher_source * 1.0  # as a teacher forward under no_grad
    mask = torch.ones(2, 1, 4, 5)
    fgd = losses.FGDLoss(4, 4)
    fg, bg = masks.fgd_masks(toy_targets()[:2], (4, 5), 2)
    loss = (losses.fgfi_loss([student], [teacher], [mask]) + losses.feature_kl_loss([student], [teacher], [mask])
            + sum(fgd(student, teacher, fg, bg).values()))
    loss.backward()
    assert student.grad.abs().sum() > 0 and teacher_source.grad is None
    assert fgd.conv_mask_t.weight.grad is not None  # the teacher-side GcBlock is trained too
