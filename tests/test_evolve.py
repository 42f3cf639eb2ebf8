"""--evolve: mutation and parent selection (units), then 2-generation searches at 64 px, 1 epoch, on the synthetic
dataset of test_train.py, for train.py (plus a resumed third generation) and train_kd.py (KD genes)."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import yaml

import train
import train_kd
from engine import evolve
from tests.test_train import COMMON, make_dataset

RUN = dict(COMMON, epochs=1, seed=3)


def _rows(path: Path) -> tuple[list[str], list[dict[str, float]]]:
    with open(path, newline="") as f:
        rows = [[c.strip() for c in r] for r in csv.reader(f) if r]
    return rows[0], [dict(zip(rows[0], map(float, r))) for r in rows[1:]]


def test_mutation_changes_something_within_limits_and_is_seeded():
    genes = evolve.hyp_genes(train.load_hyp("data/hyps/hyp.scratch-low.yaml"))
    parent = np.array([g.value for g in genes])
    a = evolve.mutate(parent, genes, np.random.default_rng((0, 1)))
    b = evolve.mutate(parent, genes, np.random.default_rng((0, 1)))
    assert np.array_equal(a, b) and not np.array_equal(a, parent)
    for g, v, p in zip(genes, a, parent):
        assert g.low <= v <= g.high
        if g.scale == 0 or p == 0:  # a zero gene (degrees 0) or a frozen one never moves
            assert v == p, g.name
        else:
            assert 0.3 * p - 1e-9 <= v <= 3 * p + 1e-9 or v in (g.low, g.high), g.name


def test_parent_is_one_of_the_five_fittest():
    rng = np.random.default_rng(0)
    results = np.zeros((8, 7))
    results[:, 3] = np.arange(8) / 10  # mAP50-95: rows 3..7 are the top 5
    values = np.arange(8, dtype=float)[:, None]
    picks = {float(evolve.select_parent(results, values, rng)[0]) for _ in range(200)}
    assert picks <= {3.0, 4.0, 5.0, 6.0, 7.0} and 7.0 in picks and 3.0 not in picks  # the worst of 5 weighs 1e-6


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("synth"), n_train=4, n_val=2)


def test_train_evolve_two_generations_then_resume(data, tmp_path):
    opt = train.run(data=data, evolve=2, project=str(tmp_path), name="evo", **RUN)
    d = Path(opt.save_dir)
    assert d == tmp_path / "evo"
    header, rows = _rows(d / "evolve.csv")
    base = train.load_hyp("data/hyps/hyp.scratch-low.yaml")
    genes = [g.name for g in evolve.hyp_genes(base)]
    assert header == [*evolve.RESULT_COLUMNS, *genes] and len(rows) == 2
    assert all(rows[0][k] == pytest.approx(base[k]) for k in genes)  # generation 0: the --hyp values
    assert any(rows[1][k] != pytest.approx(base[k]) for k in genes)  # generation 1: mutated
    for i, row in enumerate(rows):  # each generation trained with its row's values
        used = yaml.safe_load((d / f"gen{i}" / "hyp.yaml").read_text())
        assert all(used[k] == pytest.approx(row[k]) for k in genes)
        assert not (d / f"gen{i}" / "weights").exists()
    best = max(rows, key=lambda r: 0.1 * r["metrics/mAP_0.5"] + 0.9 * r["metrics/mAP_0.5:0.95"])
    evolved = train.load_hyp(d / "hyp_evolve.yaml")
    assert list(evolved) == list(base) and all(evolved[k] == pytest.approx(best[k]) for k in genes)
    assert (d / "evolve.png").stat().st_size > 0

    train.run(data=data, evolve=3, resume=str(d / "evolve.csv"), project=str(tmp_path), name="evo", **RUN)
    _, resumed = _rows(d / "evolve.csv")
    assert len(resumed) == 3 and resumed[:2] == rows and not (tmp_path / "evo2").exists()
    train.run(data=data, evolve=4, resume=True, project=str(tmp_path), **RUN)  # bare: the newest evolve.csv
    assert len(_rows(d / "evolve.csv")[1]) == 4


def test_train_kd_evolves_kd_weight_and_method_options(data, tmp_path, untrained_checkpoint):
    teacher = untrained_checkpoint("yolov5n.yaml", nc=2)
    opt = train_kd.run(data=data, evolve=2, teacher=str(teacher), kd=["fgd"], project=str(tmp_path), name="kd",
                       **RUN)
    d = Path(opt.save_dir)
    header, rows = _rows(d / "evolve.csv")
    kd_genes = ["kd_weight_fgd", "fgd_temperature", "fgd_alpha", "fgd_beta", "fgd_gamma", "fgd_lambda"]
    assert header[-len(kd_genes):] == kd_genes
    assert [rows[0][k] for k in kd_genes] == pytest.approx([0.03, 0.5, 1e-3, 5e-4, 5e-4, 5e-6])
    assert any(rows[1][k] != rows[0][k] for k in kd_genes)
    kd_yaml = yaml.safe_load((d / "gen1" / "kd.yaml").read_text())  # generation 1 distilled with its row
    assert kd_yaml["weights"]["fgd"] == pytest.approx(rows[1]["kd_weight_fgd"])
    assert [kd_yaml[k] for k in kd_genes[1:]] == pytest.approx([rows[1][k] for k in kd_genes[1:]])
    assert "--kd-weight fgd=" in (d / "hyp_evolve.yaml").read_text()
