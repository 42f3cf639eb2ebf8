"""Crash consistency and exact resume (issue 23): kill train.py / train_kd.py at many points, resume, compare.

Each case is a *chain*: a fresh 3-epoch training (yolov5n, 64 px, 8 synthetic images, batch 4: 2 batches per epoch,
one validation batch, 0 workers, CPU, --save-period 2) dies at an injected fault (tests/faults.py: SIGKILL, SIGINT,
a torn write, a full disk); ``--resume .../last.pt`` is run again and again, each dying at the chain's next fault,
and a last resume finishes the run. Then, against one uninterrupted run of the same options:
- results.csv is byte for byte the uninterrupted one: one row per epoch, the same losses, metrics, rates;
- best.pt and last.pt are stripped and hold the same weights (the reference's load: so do these);
- epoch0.pt and epoch2.pt (never stripped) are equal in everything but the date and the command line: model and
  EMA weights (FP32), EMA updates, optimizer state, the loop's state (random generators included) and the step's
  (the KD adapters and FGD modules), bit for bit: every resume in the chain was exact;
- no temporary file is left in the run folder or in weights/.

Events are counted in each process from 1. A process that starts at epoch s (0 for a fresh run) has, for each
epoch e >= s: batches 2(e-s)+1 and 2(e-s)+2, validation e-s+1 and results.csv write e-s+1, then the torch.saves
best.pt, epoch{e}.pt (e = 0 or 2) and last.pt, each followed by its rename (results.csv's too); after the last
epoch the strips of best.pt then last.pt (2 saves, 2 renames) and the final validation of best.pt. Before all of
it the process writes hyp.yaml and opt.yaml (yaml writes 1 and 2; their renames are not counted).
A fresh run: saves 1-3 in epoch 0, 4-5 in epoch 1, 6-8 in epoch 2, 9-10 the strips; renames 1-4, 5-7, 8-11, 12-13.
A resume that drops results.csv rows rewrites the table first: one more csv write and rename before all of these.
"""
from __future__ import annotations

import errno
import signal
from pathlib import Path

import pytest
import torch
import yaml

from tests.faults import FaultServer
from tests.test_train import make_dataset
from utils import atomic, checkpoint

KILLED, EPOCHS = -signal.SIGKILL, 3
FULL = f"ERROR: [Errno {errno.ENOSPC}] could not write "  # + the file, "(...); the previous <name> is unchanged"

# name -> (script, the faults of the fresh run then of each resume, what the last resume finds)
CHAINS = {
    "torn-checkpoints": ("train", ["save:5:torn",  # last.pt of epoch 1, half written (epoch 0 is committed)
                                   "save:4:torn",  # from epoch 1: epoch2.pt
                                   "save:4:torn",  # from epoch 2: the strip of best.pt
                                   "save:2:torn",  # from epoch 3 (nothing to train): the strip of last.pt
                                   "strip:1",  # from epoch 3: at the start of the (second) strip of best.pt
                                   "strip:2:int"],  # from epoch 3: Ctrl-C between the strips (best.pt done)
                         "resumes"),
    "issue-case": ("train", ["save:8:torn",  # last.pt of epoch 2 (the 3rd checkpoint): rows 0, 1, 1, 2 before
                             "save:1:torn",  # from epoch 2: best.pt
                             "save:3:kill"],  # from epoch 2: last.pt written in full, killed before its rename
                   "resumes"),
    "renames": ("train", ["replace:5",  # results.csv row 1 in place, its checkpoint not yet begun
                          "replace:4",  # from epoch 1 (rename 1: the trim of row 1): last.pt of epoch 1 in place
                          "replace:6"],  # from epoch 2: last.pt stripped, before the final validation
                "finished"),
    "batches": ("train", ["batch:3",  # first batch of epoch 1
                          "yaml:2:torn",  # from epoch 1: opt.yaml half rewritten (the next resume reads it)
                          "batch:2:int",  # from epoch 1: Ctrl-C at its second batch
                          "optstep:4"],  # from epoch 1: after the last optimiser step of epoch 2
                "resumes"),
    "validation": ("train", ["val:2",  # inside epoch 1's validation
                             "val:2:int",  # from epoch 1: Ctrl-C inside epoch 2's validation
                             "val:2"],  # from epoch 2: inside the final validation of best.pt (after the strips)
                   "finished"),
    "results-csv": ("train", ["replace:4",  # last.pt of epoch 0 in place
                              "csv:1:torn",  # from epoch 1: results.csv row 1 half written
                              "csv:2:int"],  # from epoch 1: Ctrl-C inside the results.csv write of row 2
                    "resumes"),
    "full-disk": ("train", ["save:5:full",  # ENOSPC writing last.pt of epoch 1: the run stops, epoch 0 kept
                            "csv:1:full",  # from epoch 1: ENOSPC while the resume rewrites results.csv without row 1
                            "csv:2:full",  # from epoch 1: that rewrite again (csv 1), then ENOSPC writing row 1
                            "save:1:int"],  # from epoch 1: Ctrl-C inside the torch.save of best.pt
                  "resumes"),
    "image-weights-multi-scale": ("train", ["batch:3",  # the loader (not endless) draws its shuffle per epoch
                                            "val:1:int"],  # from epoch 1: Ctrl-C inside its validation
                                  "resumes"),
    "kd-checkpoint-batch-validation": ("train_kd", ["save:5:torn", "batch:2:int", "val:2"], "resumes"),
    "kd-full-disk-csv-strip": ("train_kd", ["save:4:full",  # ENOSPC writing best.pt of epoch 1
                                            "replace:4",  # from epoch 1 (the trim of row 1, row 1, best): last.pt
                                            "csv:1:torn",  # from epoch 2: results.csv row 2 half written
                                            "strip:2"],  # from epoch 2: between the strips
                               "resumes"),
}
# chains run with extra options (and their own uninterrupted reference): the other random streams of the loop
EXTRA = {"image-weights-multi-scale": ["--image-weights", "--multi-scale"]}  # global random, trainer.rng
FULL_DISK_FILES = {"full-disk": ["weights/last.pt", "results.csv"], "kd-full-disk-csv-strip": ["weights/best.pt"]}


@pytest.fixture(scope="module")
def server():
    with FaultServer() as s:
        yield s


@pytest.fixture(scope="module")
def setup(tmp_path_factory, untrained_checkpoint):
    root = tmp_path_factory.mktemp("crash")
    data = root / "synth.yaml"
    data.write_text(yaml.safe_dump(make_dataset(root / "synth")))
    return {"data": data, "teacher": untrained_checkpoint("yolov5n.yaml", nc=2)}


def fresh_argv(setup: dict, script: str, run: Path, extra: tuple = ()) -> list[str]:
    argv = ["--data", str(setup["data"]), "--cfg", "yolov5n.yaml", "--weights", "", "--imgsz", "64",
            "--batch-size", "4", "--epochs", str(EPOCHS), "--workers", "0", "--device", "cpu", "--noplots",
            "--noautoanchor", "--save-period", "2", "--seed", "0", "--project", str(run.parent), "--name", run.name]
    if script == "train_kd":
        argv += ["--teacher", str(setup["teacher"]), "--kd", "fgfi", "fgd"]
    return argv + list(extra)


@pytest.fixture(scope="module")
def references(server, setup, tmp_path_factory):
    """One uninterrupted run per script, on demand: its results.csv bytes and its checkpoints (loaded)."""
    from models.weights import load_model

    done = {}

    def get(script: str, extra: tuple = ()) -> dict:
        if (script, extra) not in done:
            run = tmp_path_factory.mktemp(f"reference-{script}") / "run"
            status = server.run(script, fresh_argv(setup, script, run, extra), None, run.parent / "log.txt")
            assert status == 0, (run.parent / "log.txt").read_text()[-3000:]
            weights = {p.name: load(p) for p in sorted((run / "weights").glob("*.pt"))}
            assert sorted(weights) == ["best.pt", "epoch0.pt", "epoch2.pt", "last.pt"]
            for name in ("best.pt", "last.pt"):  # stripped, and loadable for val.py / detect.py
                assert weights[name]["optimizer"] is None and weights[name]["epoch"] == -1
                assert "loop" not in weights[name] and load_model(run / "weights" / name).nc == 2
            assert weights["epoch2.pt"]["optimizer"] and weights["epoch2.pt"]["loop"]["rng"]
            done[script, extra] = {"results.csv": (run / "results.csv").read_bytes(), "weights": weights}
        return done[script, extra]

    return get


def expected_status(fault: str) -> int:
    action = (fault.split(":") + ["kill"])[2]
    return {"kill": KILLED, "torn": KILLED}.get(action, 1)  # Ctrl-C, full disk: a Python exit


def same(a, b, path="") -> list[str]:
    """Paths where two checkpoint structures differ (tensors bit for bit)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        ok = isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
        return [] if ok else [path]
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return [f"{path} keys {sorted(map(str, a.keys() ^ b.keys()))}"]
        return [d for k in a for d in same(a[k], b[k], f"{path}/{k}")]
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return [f"{path} length"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in same(x, y, f"{path}/{i}")]
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]


def load(path: Path) -> dict:
    ck = checkpoint.safe_load(path)
    ck.pop("date"), ck.pop("opt")  # when, and the command line (--resume ...)
    return ck


def check_finished(run: Path, reference: dict) -> None:
    """The invariants of a finished run, against the uninterrupted reference (``references``)."""
    weights = run / "weights"
    assert not atomic.temp_files(run) and not atomic.temp_files(weights), "temporary files left"
    assert (run / "results.csv").read_bytes() == reference["results.csv"]
    assert sorted(p.name for p in weights.glob("*.pt")) == sorted(reference["weights"])
    differences = [d for name, ck in reference["weights"].items() for d in same(load(weights / name), ck, name)]
    assert not differences, differences[:10]


@pytest.mark.parametrize("chain", list(CHAINS))
def test_killed_runs_resume_to_the_uninterrupted_result(server, setup, references, tmp_path, chain):
    script, faults, ending = CHAINS[chain]
    run, log = tmp_path / "run", tmp_path / "log.txt"
    last = run / "weights" / "last.pt"
    extra = tuple(EXTRA.get(chain, ()))
    reference = references(script, extra)
    status = server.run(script, fresh_argv(setup, script, run, extra), faults[0], log)
    assert status == expected_status(faults[0]), log.read_text()[-3000:]
    for fault in faults[1:]:
        status = server.run(script, ["--resume", str(last)], fault, log)
        assert status == expected_status(fault), log.read_text()[-3000:]
    status = server.run(script, ["--resume", str(last)], None, log)
    text = log.read_text()
    if ending == "finished":  # died after last.pt was stripped: the run is complete, nothing to resume
        assert status == 1 and "nothing to resume" in text[-1000:], text[-3000:]
    else:
        assert status == 0, text[-3000:]
    check_finished(run, reference)
    for name in FULL_DISK_FILES.get(chain, []):  # one line, naming the file, saying the old one is intact
        line = f"{FULL}{run / name} (No space left on device); the previous {Path(name).name} is unchanged"
        assert any(out.startswith(line) for out in text.splitlines()), text[-3000:]  # + cli's traceback hint


def test_nothing_to_resume_before_the_first_checkpoint(server, setup, tmp_path):
    """Killed while writing the first last.pt, or Ctrl-C in epoch 0: --resume says so in one line."""
    log = tmp_path / "log.txt"
    for fault, name in (("save:3:torn", "torn"), ("batch:1:int", "ctrl-c")):
        run = tmp_path / name
        last = run / "weights" / "last.pt"
        assert server.run("train", fresh_argv(setup, "train", run), fault, log) == expected_status(fault)
        assert not last.exists()
        assert server.run("train", ["--resume", str(last)], None, log) == 1
        assert f"--resume checkpoint {last} does not exist" in log.read_text()
    assert "Interrupted in epoch 0 before any checkpoint was saved: nothing to resume" in log.read_text()
