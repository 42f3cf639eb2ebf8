"""Bad input (issue 23 item 6): damaged and foreign checkpoints as --weights, --teacher and --resume, a teacher with
other classes than the dataset's, and a detect.py folder with a corrupt image and an unreadable video. Each gives a
one-line error (or a warning) naming the file, and leaves the file and the run folders untouched.
Dataset yamls with missing or outside paths: tests/data/test_config.py.
"""
from __future__ import annotations

import argparse
import hashlib
import logging
import pickle
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

import detect
import train
import train_kd
from distill import teacher as kd_teacher
from distill.config import KDConfig
from distill.methods import METHODS
from models import weights
from models.yolo import Model
from utils import checkpoint, cli

# what each kind of bad file is called in the error
KINDS = {
    "truncated": "truncated or damaged",
    "foreign_pickle": "refused to load global 'argparse.Namespace'",
    "plain_pickle": "a pickle, but not a torch.save checkpoint",
    "zip": "a zip archive, but not a PyTorch checkpoint",
    "state_dict": "a bare state_dict",
    "other_architecture": "weights do not match the architecture in its yaml",
    "text": "a text file, not a PyTorch checkpoint",
}
DAMAGED = [k for k in KINDS if k != "other_architecture"]  # unreadable as any checkpoint


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, untrained_checkpoint) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bad")
    good = untrained_checkpoint("yolov5n.yaml", nc=2).read_bytes()
    files = {kind: folder / f"{kind}.pt" for kind in KINDS}
    files["truncated"].write_bytes(good[: len(good) // 2])
    files["foreign_pickle"].write_bytes(pickle.dumps(argparse.Namespace(lr=0.01)))
    files["plain_pickle"].write_bytes(pickle.dumps({"lr": 0.01}))
    with zipfile.ZipFile(files["zip"], "w") as z:
        z.writestr("notes/readme.txt", "not weights")
    torch.save(torch.nn.Conv2d(3, 4, 1).state_dict(), files["state_dict"])
    record = weights.model_record(Model("yolov5n.yaml", nc=2))
    record["state_dict"] = weights.model_record(Model("yolov5s.yaml", nc=2))["state_dict"]  # yaml and weights disagree
    checkpoint.save_checkpoint({"model": record, "epoch": -1}, files["other_architecture"])
    files["text"].write_text("epoch: 3\nthis is not a checkpoint\n")
    return files


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _one_line_naming(error: BaseException, path: Path, problem: str) -> None:
    message = str(error)
    assert "\n" not in message and str(path) in message and problem in message, message


@pytest.mark.parametrize("kind", KINDS)
def test_load_model_says_what_the_file_is(bad_files, kind):
    path, before = bad_files[kind], _digest(bad_files[kind])
    with pytest.raises((ValueError, pickle.UnpicklingError)) as e:
        weights.load_model(path)
    _one_line_naming(e.value, path, KINDS[kind])
    assert _digest(path) == before


@pytest.mark.parametrize("kind", DAMAGED)
def test_bad_weights_stop_train_before_any_run_folder(bad_files, kind, tmp_path):
    path = bad_files[kind]
    with pytest.raises((ValueError, pickle.UnpicklingError)) as e:
        train.run(weights=str(path), cfg="yolov5n.yaml", device="cpu", project=str(tmp_path), name="run")
    _one_line_naming(e.value, path, KINDS[kind])
    assert not any(tmp_path.iterdir())  # the checkpoint is read before the run folder is made


def test_weights_of_another_architecture_warn_or_stop(bad_files, caplog):
    """--weights transfers the tensors that fit (upstream's rule, e.g. yolov5s.pt into --cfg yolov5n.yaml); fewer
    than half is a warning naming the file, none at all an error."""
    opt = argparse.Namespace(cfg="", resume=False, weights=str(bad_files["other_architecture"]), freeze=[0])
    ckpt = weights.load_checkpoint(bad_files["other_architecture"])
    with caplog.at_level(logging.WARNING, logger="train"):
        train.build_model(opt, {}, 2, {0: "a", 1: "b"}, ckpt, torch.device("cpu"))
    assert f"--weights {opt.weights}: only" in caplog.text and "tensors fit" in caplog.text
    ckpt["model"]["state_dict"] = {f"other.{k}": v for k, v in ckpt["model"]["state_dict"].items()}
    with pytest.raises(ValueError, match=r"none of its \d+ tensors fits the model"):
        train.build_model(opt, {}, 2, {0: "a", 1: "b"}, ckpt, torch.device("cpu"))


@pytest.mark.parametrize("kind", KINDS)
def test_bad_teacher_stops_train_kd_before_any_run_folder(bad_files, kind, tmp_path):
    path, before = bad_files[kind], _digest(bad_files[kind])
    with pytest.raises((ValueError, pickle.UnpicklingError)) as e:
        train_kd.run(teacher=str(path), cfg="yolov5n.yaml", device="cpu", project=str(tmp_path), name="kd")
    _one_line_naming(e.value, path, KINDS[kind])
    assert _digest(path) == before and not any(tmp_path.iterdir())


@pytest.mark.parametrize("kind", KINDS)
def test_bad_resume_checkpoint_alone(bad_files, kind):
    path = bad_files[kind]  # no <run>/opt.yaml two folders up: the options must come from the file
    problem = "no training options" if kind == "other_architecture" else KINDS[kind]
    with pytest.raises((ValueError, pickle.UnpicklingError)) as e:
        train.run(resume=str(path))
    _one_line_naming(e.value, path, problem)


@pytest.mark.parametrize("kind", DAMAGED)
def test_bad_last_pt_in_a_run_folder_leaves_the_run_as_it_was(bad_files, kind, tmp_path):
    run = tmp_path / "exp"
    (run / "weights").mkdir(parents=True)
    last = run / "weights" / "last.pt"
    last.write_bytes(bad_files[kind].read_bytes())
    options = cli.plain_opt(train.parse_opt(["--cfg", "yolov5n.yaml", "--device", "cpu", "--project", str(tmp_path)]))
    (run / "opt.yaml").write_text(yaml.safe_dump({**options, "save_dir": str(run)}))
    before = {p: _digest(p) for p in run.rglob("*") if p.is_file()}
    with pytest.raises((ValueError, pickle.UnpicklingError)) as e:
        train.run(resume=str(last))
    _one_line_naming(e.value, last, KINDS[kind])
    assert {p: _digest(p) for p in run.rglob("*") if p.is_file()} == before  # opt.yaml not rewritten


def test_teacher_classes_rule():
    """Documented in distill/teacher.py: output-level methods need the dataset's classes, feature-level ones warn."""
    data = {0: "red", 1: "green"}
    kd_teacher.check_classes(dict(data), data, "t.pt", "d.yaml", ["ogd"])  # same classes: nothing to say
    with pytest.raises(ValueError) as e:
        kd_teacher.check_classes({0: "person", 1: "car"}, data, "t.pt", "d.yaml", ["ogd"])
    message = str(e.value)
    assert "\n" not in message and "teacher t.pt has classes [person, car]" in message
    assert "dataset d.yaml has [red, green]" in message and "ogd compare outputs class by class" in message
    with pytest.raises(ValueError, match=r"\[a, b, c, d, e, f, \.\.\. \(80 classes\)\]"):
        kd_teacher.check_classes({i: "abcdefgh"[i % 8] for i in range(80)}, data, "t.pt", "d.yaml", ["cilf"])
    kd_teacher.check_classes({0: "person", 1: "car"}, data, "t.pt", "d.yaml", [])  # feature-level: a warning only
    comparing = [m for m, cls in METHODS.items() if cls.compares_classes(KDConfig(methods=(m,)).options(m))]
    assert comparing == ["cilf", "ogd"]  # CILF's default KL is on the outputs
    assert not METHODS["cilf"].compares_classes(KDConfig(methods=("cilf",), cilf_kl="features").options("cilf"))


def test_train_kd_refuses_a_teacher_with_other_classes_for_output_kd(tmp_path, untrained_checkpoint):
    from tests.test_train import make_dataset

    data = tmp_path / "data.yaml"
    data.write_text(yaml.safe_dump(make_dataset(tmp_path / "synth", n_train=2, n_val=1)))
    teacher = untrained_checkpoint("yolov5n.yaml", nc=2)  # classes '0', '1' (or class0...): not red, green
    with pytest.raises(ValueError, match=rf"teacher {teacher} has classes .* dataset {data} has \[red, green\]"):
        train_kd.run(data=str(data), cfg="yolov5n.yaml", teacher=str(teacher), kd=["ogd"], imgsz=64, epochs=1,
                     batch_size=2, workers=0, device="cpu", noautoanchor=True, noplots=True,
                     project=str(tmp_path), name="kd")


def _video_without_decodable_frames(path: Path) -> None:
    """A real mp4 (its index intact, so it opens) whose frame data is zeroed."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 5, (64, 48))
    for i in range(3):
        writer.write(np.full((48, 64, 3), 40 * i, np.uint8))
    writer.release()
    data = bytearray(path.read_bytes())
    start, end = data.find(b"mdat") + 4, data.find(b"moov") - 4
    data[start:end] = bytes(end - start)
    path.write_bytes(bytes(data))
    capture = cv2.VideoCapture(str(path))
    assert capture.isOpened()
    capture.release()


def test_detect_skips_a_corrupt_image_and_unreadable_videos(tmp_path, untrained_checkpoint, caplog):
    source = tmp_path / "src"
    source.mkdir()
    cv2.imwrite(str(source / "a_good.jpg"), np.full((48, 64, 3), 90, np.uint8))
    (source / "b_corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (source / "c_broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 garbage, no frames")
    _video_without_decodable_frames(source / "d_zeroed.mp4")
    before = {p.name: _digest(p) for p in source.iterdir()}
    with caplog.at_level(logging.WARNING):
        result = detect.run(weights=str(untrained_checkpoint("yolov5n.yaml", nc=2)), source=str(source), imgsz=64,
                            project=str(tmp_path), name="out")
    assert list(result.detections) == [str(source / "a_good.jpg")]  # went on with the rest
    assert f"skipping {source / 'b_corrupt.jpg'}: cannot read or decode the image" in caplog.text
    assert f"skipping {source / 'c_broken.mp4'}: cannot open the video" in caplog.text
    assert f"skipping {source / 'd_zeroed.mp4'}: no frame of the video could be decoded" in caplog.text
    assert {p.name: _digest(p) for p in source.iterdir()} == before
    assert [p.name for p in result.save_dir.iterdir()] == ["a_good.jpg"]


def test_bad_dataset_or_hyp_yaml_stops_train_before_any_run_folder(tmp_path):
    listed = tmp_path / "list.yaml"
    listed.write_text("- lr0\n- 0.01\n")
    missing = tmp_path / "data.yaml"
    missing.write_text(yaml.safe_dump({"train": str(tmp_path / "no" / "train"), "val": str(tmp_path / "no" / "val"),
                                       "names": ["a"]}))
    runs = tmp_path / "runs"
    with pytest.raises(FileNotFoundError, match=rf"^{missing}: dataset not found: val: {tmp_path / 'no' / 'val'}"):
        train.run(data=str(missing), cfg="yolov5n.yaml", device="cpu", project=str(runs))
    with pytest.raises(ValueError, match=rf"^--hyp {listed}: a hyperparameter yaml must be a mapping"):
        train.load_hyp(str(listed))
    assert not runs.exists() and listed.read_text() == "- lr0\n- 0.01\n"


def test_bad_teacher_ensemble_member_stops_before_any_run_folder(bad_files, untrained_checkpoint, tmp_path):
    good = untrained_checkpoint("yolov5n.yaml", nc=2)
    with pytest.raises(ValueError) as e:
        train_kd.run(teacher=str(good), teacher_ensemble=[str(bad_files["text"])], kd=["ogd"], cfg="yolov5n.yaml",
                     device="cpu", project=str(tmp_path), name="kd")
    _one_line_naming(e.value, bad_files["text"], KINDS["text"])
    with pytest.raises(FileNotFoundError, match=r"^--teacher-ensemble '.*none\.pt' not found"):
        train_kd.run(teacher=str(good), teacher_ensemble=[str(tmp_path / "none.pt")], kd=["ogd"], cfg="yolov5n.yaml",
                     device="cpu", project=str(tmp_path), name="kd")
    assert not any(tmp_path.iterdir())
