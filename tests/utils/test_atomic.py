"""Atomic writes (utils.atomic), results.csv rows on resume (utils.results) and random-state round trips (utils.seed)."""
import errno
import random

import numpy as np
import pytest
import torch

from utils import atomic, checkpoint, results, seed


def test_full_disk_keeps_the_previous_file_and_names_it(tmp_path, monkeypatch):
    """torch.save writes part of the file, then the disk is full: the old last.pt stays, no temp file, one line."""
    path = tmp_path / "last.pt"
    checkpoint.save_checkpoint({"epoch": 1}, path)

    def full(obj, f):
        f.write(b"x" * 1000)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(atomic.WriteError) as info:
        checkpoint.save_checkpoint({"epoch": 2}, path)
    assert info.value.errno == errno.ENOSPC
    assert str(info.value) == (f"[Errno 28] could not write {path} (No space left on device); "
                               "the previous last.pt is unchanged")
    monkeypatch.undo()
    assert torch.load(path, weights_only=True) == {"epoch": 1}
    assert [f.name for f in tmp_path.iterdir()] == ["last.pt"]
    with pytest.raises(atomic.WriteError, match=r"could not write .*best.pt .*; no best.pt was written"):
        atomic.write_atomic(tmp_path / "best.pt", lambda f: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full")))
    assert [f.name for f in tmp_path.iterdir()] == ["last.pt"]


def test_temp_files_of_dead_writes_are_found_and_removed(tmp_path):
    (tmp_path / "last.pt").write_bytes(b"ok")
    dead = [tmp_path / ".last.pt.abc123.tmp", tmp_path / ".results.csv.x_9.tmp"]
    for f in dead:
        f.write_bytes(b"half")
    (tmp_path / "notes.tmp").write_bytes(b"not ours: no leading dot")
    assert atomic.temp_files(tmp_path) == sorted(dead)
    assert atomic.remove_temp_files(tmp_path) == sorted(dead)
    assert sorted(f.name for f in tmp_path.iterdir()) == ["last.pt", "notes.tmp"]
    assert atomic.temp_files(tmp_path / "missing") == []


def test_results_csv_rows_after_the_checkpoint_are_dropped(tmp_path):
    csv = results.ResultsCSV(tmp_path / "results.csv")
    for epoch in (0, 1, 1, 2):  # the rows of the issue: epoch 1 written twice
        csv.append({"epoch": epoch, "train/box_loss": 0.1 * epoch, "x/lr0": 0.01})
    text = csv.path.read_text()
    assert csv.keep_until(2) == 0 and csv.path.read_text() == text  # nothing to drop: untouched
    assert csv.keep_until(0) == 3
    assert results.read_results(csv.path)["epoch"].tolist() == [0]
    csv.append({"epoch": 1, "train/box_loss": 0.1, "x/lr0": 0.01})
    with open(csv.path, "a") as f:  # a row torn by an older, non-atomic writer
        f.write("                   2,             0.2")
    assert csv.keep_until(5) == 1
    assert results.read_results(csv.path)["epoch"].tolist() == [0, 1]
    assert not atomic.temp_files(tmp_path)
    assert results.ResultsCSV(tmp_path / "none.csv").keep_until(3) == 0


def test_rng_state_round_trip_through_a_weights_only_checkpoint(tmp_path):
    shuffle, augment = torch.Generator().manual_seed(3), np.random.default_rng(5)
    generators = {"shuffle": shuffle, "augment": augment}
    random.seed(1), np.random.seed(2), torch.manual_seed(4)
    checkpoint.save_checkpoint(seed.rng_state(generators), tmp_path / "rng.pt")

    def draws():
        return (random.random(), np.random.rand(), np.random.randn(), torch.rand(2).tolist(),
                torch.randperm(5, generator=shuffle).tolist(), augment.random())

    first = draws()
    seed.set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True), generators)
    assert draws() == first
    assert draws() != first


def test_written_files_get_the_mode_of_a_plain_open(tmp_path):
    """mkstemp makes 0600 files; results.csv and checkpoints must stay readable as with open() (umask applied)."""
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    written = atomic.write_text(tmp_path / "results.csv", "x")
    assert written.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777 == atomic.FILE_MODE
