"""utils.metrics against hand computations and a plain-loop reference of the v7.0 matching rule."""
import numpy as np
import pytest
import torch

from utils import metrics


def _det(boxes, confs, classes):
    return torch.tensor([[*b, c, k] for b, c, k in zip(boxes, confs, classes)], dtype=torch.float32)


def _lab(boxes, classes):
    return torch.tensor([[k, *b] for b, k in zip(boxes, classes)], dtype=torch.float32)


def test_compute_ap_perfect_curve_is_0995():
    # Recall reaches 1 at precision 1: the trapezoid's last step falls to the padded 0, hence 0.995 not 1.
    ap, _, _ = metrics.compute_ap(np.array([0.5, 1.0]), np.array([1.0, 1.0]))
    assert ap == pytest.approx(0.995, abs=1e-9)


def test_compute_ap_hand_case():
    # 3 labels, predictions TP FP TP TP: recall 1/3 1/3 2/3 1, precision 1 .5 .667 .75.
    # Envelope: 1 up to recall 1/3, then .75 up to recall 1; 101 samples: k=0..33 -> 1, k=34..99 -> .75, k=100 -> 0.
    # Trapezoid: 33*.01 + (1+.75)/2*.01 + 65*.75*.01 + .75/2*.01 = 0.83
    recall = np.array([1, 1, 2, 3]) / 3
    precision = np.array([1, 1 / 2, 2 / 3, 3 / 4])
    ap, mpre, mrec = metrics.compute_ap(recall, precision)
    assert ap == pytest.approx(0.83, abs=1e-9)
    assert mpre.tolist() == pytest.approx([1, 1, 0.75, 0.75, 0.75, 0])
    assert mrec[0] == 0 and mrec[-1] == 1


def test_ap_per_class_two_classes():
    # class 0: the 0.83 case above; class 1: 2 labels, one TP at conf .95 -> recall .5, precision 1; the envelope
    # is 1 up to recall .5 then falls linearly to the padded (1, 0): AP = 0.5 + 0.5 * 0.5 = 0.75.
    tp = np.array([[1], [0], [1], [1], [1]], dtype=bool)
    conf = np.array([0.9, 0.8, 0.7, 0.6, 0.95])
    pred_cls = np.array([0, 0, 0, 0, 1])
    target_cls = np.array([0, 0, 0, 1, 1])
    _, _, p, r, _, ap, classes, _ = metrics.ap_per_class(tp, conf, pred_cls, target_cls)
    assert classes.tolist() == [0, 1]
    assert ap[:, 0] == pytest.approx([0.83, 0.75], abs=1e-9)
    assert p[1] == pytest.approx(1.0) and r[1] == pytest.approx(0.5)


def test_ap_per_class_ignores_predicted_only_classes_and_zero_for_unpredicted():
    tp = np.ones((2, 10), dtype=bool)
    _, _, p, r, _, ap, classes, _ = metrics.ap_per_class(tp, np.array([0.9, 0.8]), np.array([0, 7]), np.array([0, 3]))
    assert classes.tolist() == [0, 3]  # class 7 has no labels: ignored
    assert ap[0, 0] == pytest.approx(0.995) and ap[1].sum() == 0  # class 3 has no predictions: AP 0
    assert p[0] == pytest.approx(1.0) and r[0] == pytest.approx(1.0) and r[1] == 0


def test_smooth_box_filter_edges():
    y = np.array([0.0] * 500 + [1.0] * 500)
    s = metrics.smooth(y, 0.1)  # round(1000*0.1*2)//2+1 = 101 taps, 50 edge copies each side
    assert s.shape == y.shape
    assert s[0] == 0 and s[-1] == 1
    assert s[500] == pytest.approx(51 / 101) and s[449] == 0 and s[450] == pytest.approx(1 / 101)


def test_match_spec_example_most_confident_wins():
    # label 0 with det0 (IoU 0.6) and det1 (IoU 0.9): det0 is matched at t=0.5, det1 only from t=0.65 on.
    labels = _lab([[0, 0, 10, 10]], [0])
    dets = _det([[0, 0, 10, 6], [0, 0, 10, 9]], [0.9, 0.8], [0, 0])
    correct = metrics.match_predictions(dets, labels)
    assert correct.shape == (2, 10) and correct.dtype == torch.bool
    assert correct[:, 0].tolist() == [True, False]
    assert correct[:, 1].tolist() == [True, False]  # t=0.55
    assert correct[:, 3].tolist() == [False, True]  # t=0.65


def test_match_class_mask():
    labels = _lab([[0, 0, 10, 10]], [1])
    dets = _det([[0, 0, 10, 10]], [0.9], [0])
    assert not metrics.match_predictions(dets, labels).any()


def test_match_tie_and_crowd():
    # Two overlapping labels; det0 sits exactly between them (equal IoU 0.818 with both), det1 == L0, det2 == L1.
    labels = _lab([[0, 0, 10, 10], [2, 0, 12, 10]], [0, 0])
    dets = _det([[1, 0, 11, 10], [0, 0, 10, 10], [2, 0, 12, 10]], [0.9, 0.8, 0.7], [0, 0, 0])
    correct = metrics.match_predictions(dets, labels)
    # t=0.5: det0 takes one label (the most confident wins), its twin keeps the other: exactly 2 correct.
    assert correct[0, 0] and correct[:, 0].sum() == 2
    # t=0.85: det0 no longer qualifies, det1 and det2 match their exact labels.
    assert correct[:, 7].tolist() == [False, True, True]


def _reference_match(iou, same_class, thresholds):
    """Plain-loop statement of the rule: each det considers only its best label; in det order, first come wins."""
    out = np.zeros((iou.shape[1], len(thresholds)), dtype=bool)
    for k, t in enumerate(thresholds):
        valid = (iou >= t) & same_class
        taken = set()
        for d in range(iou.shape[1]):
            if valid[:, d].any():
                best = int(np.argmax(np.where(valid[:, d], iou[:, d], -1)))
                if best not in taken:
                    taken.add(best)
                    out[d, k] = True
    return out


def test_match_random_crowds_against_loop_reference():
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        xy = torch.rand(8, 2, generator=g) * 50
        lab = _lab(torch.cat((xy, xy + 20 + torch.rand(8, 2, generator=g) * 10), 1).tolist(),
                   torch.randint(0, 2, (8,), generator=g).tolist())
        jitter = lab[:, 1:].repeat(4, 1) + torch.randn(32, 4, generator=g) * 3
        conf = torch.rand(32, generator=g).sort(descending=True).values
        dets = _det(jitter.tolist(), conf.tolist(), torch.randint(0, 2, (32,), generator=g).tolist())
        got = metrics.match_predictions(dets, lab).numpy()
        iou = metrics.boxes.box_iou(lab[:, 1:], dets[:, :4]).numpy()
        same = (lab[:, 0:1] == dets[:, 5]).numpy()
        want = _reference_match(iou, same, metrics.IOU_THRESHOLDS.numpy())
        assert got.any() and (got == want).all()


def test_confusion_matrix_toy():
    cm = metrics.ConfusionMatrix(nc=2, conf=0.25, iou_thres=0.45)
    labels = _lab([[0, 0, 10, 10], [20, 20, 30, 30], [50, 50, 60, 60]], [0, 1, 1])
    dets = _det(
        [[0, 0, 10, 10], [20, 20, 30, 30], [80, 80, 90, 90], [50, 50, 60, 60]],
        [0.9, 0.8, 0.7, 0.1],  # the last is below conf 0.25: ignored, so label 2 is missed
        [0, 0, 1, 1],
    )
    cm.process_batch(dets, labels)
    expected = np.zeros((3, 3))
    expected[0, 0] = 1  # correct
    expected[0, 1] = 1  # a class-1 object predicted as 0
    expected[2, 1] = 1  # a class-1 object missed (background row)
    expected[1, 2] = 1  # a class-1 detection on background (background column)
    assert (cm.matrix == expected).all()
    tp, fp = cm.tp_fp()
    assert tp.tolist() == [1, 0] and fp.tolist() == [1, 1]
    cm.process_batch(None, torch.tensor([0.0, 1.0]))  # image without predictions: both labels missed
    assert cm.matrix[2].tolist() == [1, 2, 0]


def test_confusion_matrix_counts_false_positives_without_labels():
    cm = metrics.ConfusionMatrix(nc=2)
    cm.process_batch(_det([[0, 0, 10, 10]], [0.9], [1]), torch.zeros((0, 5)))
    assert cm.matrix[1, 2] == 1 and cm.matrix.sum() == 1


def test_fitness_weights():
    assert metrics.fitness(np.array([[0.5, 0.5, 0.8, 0.4]])) == pytest.approx([0.1 * 0.8 + 0.9 * 0.4])


def test_ap_per_class_returns_the_curves_it_reports_from():
    tp = np.array([[1], [0], [1]], dtype=bool)
    s = metrics.ap_per_class(tp, np.array([0.9, 0.5, 0.3]), np.array([0, 0, 1]), np.array([0, 1]))
    c = s.curves
    assert c.px.shape == (1000,) and c.p.shape == c.r.shape == c.f1.shape == (2, 1000)
    assert len(c.pr) == 2 and all(pr.shape == (1000,) for pr in c.pr)
    i = metrics.smooth(c.f1.mean(0), 0.1).argmax()  # the reported P/R/F1 are the curves at the best mean F1
    assert np.array_equal(s.p, c.p[:, i]) and np.array_equal(s.r, c.r[:, i]) and np.array_equal(s.f1, c.f1[:, i])


def test_metrics_never_imports_plotting():
    import ast
    from pathlib import Path

    tree = ast.parse(Path(metrics.__file__).read_text())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {f"{n.module}.{a.name}" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
    assert not [m for m in imported if "metric_plots" in m or "matplotlib" in m]


def test_val_results_field_order_is_the_old_tuple():
    r = metrics.ValResults(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
    assert r._fields == ("precision", "recall", "map50", "map", "box_loss", "obj_loss", "cls_loss")
    assert tuple(r) == (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7) and r[4:] == (0.5, 0.6, 0.7)
    assert np.array(r).tolist() == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]  # what train.py does with it


def test_curves_and_confusion_plots_written(tmp_path):
    from utils import metric_plots

    tp = np.array([[1], [0], [1]], dtype=bool)
    s = metrics.ap_per_class(tp, np.array([0.9, 0.5, 0.3]), np.array([0, 0, 1]), np.array([0, 1]))
    paths = metric_plots.plot_ap_curves(s, tmp_path, names={0: "a", 1: "b"})
    matrix = np.zeros((3, 3))
    matrix[0, 0] = 3
    paths.append(metric_plots.plot_confusion_matrix(matrix, tmp_path / "confusion_matrix.png", ["a", "b"]))
    for name in ("PR_curve", "F1_curve", "P_curve", "R_curve", "confusion_matrix"):
        assert (tmp_path / f"{name}.png").stat().st_size > 1000 and tmp_path / f"{name}.png" in paths
