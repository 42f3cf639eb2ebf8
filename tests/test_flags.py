"""Every command-line flag either works or stops with a message naming it (issue 23 item 5).

"Works" is checked statically, so a new flag that nothing reads fails here: train.py/train_kd.py flags must be read
as ``opt.<dest>`` (or ``getattr(opt, "<dest>")``) in those files, KD method options by their method, and the flags of
val.py/detect.py/export.py must be parameters of the script's ``run`` that its body (or ``main``) reads. The
refused ones (utils/cli.py) must raise a ValueError naming the flag, before any work.
"""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import detect
import export
import train
import train_kd
import val
from distill.config import option_fields
from distill.methods import METHODS
from utils import cli

ROOT = Path(__file__).resolve().parents[1]
PARSERS = {"train": train.get_args_parser, "train_kd": train_kd.get_args_parser, "val": val.get_args_parser,
           "detect": detect.get_args_parser, "export": export.get_args_parser}


def _dests(script: str) -> set[str]:
    return {a.dest for a in PARSERS[script]()._actions if a.dest != "help"}


def _refused(script: str) -> set[str]:
    return {cli.dest(flag) for flag in cli.REFUSED.get("train" if script == "train_kd" else script, {})}


def _tree(path: Path) -> ast.AST:
    return ast.parse(path.read_text(encoding="utf-8"))


def _opt_reads(*files: Path) -> set[str]:
    """Attributes read from a name ``opt`` (``opt.x``, ``getattr(opt, "x", ...)``) in ``files``."""
    reads = set()
    for f in files:
        for node in ast.walk(_tree(f)):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "opt":
                reads.add(node.attr)
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr"
                  and len(node.args) >= 2 and isinstance(node.args[0], ast.Name) and node.args[0].id == "opt"
                  and isinstance(node.args[1], ast.Constant)):
                reads.add(node.args[1].value)
    return reads


def _attributes(*files: Path) -> set[str]:
    return {n.attr for f in files for n in ast.walk(_tree(f)) if isinstance(n, ast.Attribute)}


def test_every_train_and_train_kd_flag_is_read_or_refused():
    reads = _opt_reads(ROOT / "train.py", ROOT / "train_kd.py")
    method_flags = {flat for method in METHODS for flat, _ in option_fields(method)}
    for script in ("train", "train_kd"):
        unused = _dests(script) - reads - _refused(script) - method_flags
        assert not unused, f"{script}.py flags accepted but never read: {sorted(unused)}"


def test_every_kd_method_option_is_read_by_distill():
    """--<method>-<option> reaches KDConfig generically; the option itself must be read somewhere in distill/."""
    attributes = _attributes(*sorted((ROOT / "distill").rglob("*.py")))
    for method in METHODS:
        for flat, field in option_fields(method):
            assert {field.name, flat} & attributes, f"--{flat.replace('_', '-')} is never read in distill/"


def _run_reads(path: Path) -> tuple[set[str], set[str]]:
    """(parameters of ``run``, names loaded in ``run`` and ``main``) of a script."""
    functions = {n.name: n for n in _tree(path).body if isinstance(n, ast.FunctionDef)}
    args = functions["run"].args
    params = {a.arg for a in args.args + args.kwonlyargs}
    loaded = {n.id for f in ("run", "main") for n in ast.walk(functions[f])
              if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    return params, loaded | _opt_reads(path)


@pytest.mark.parametrize("script", ["val", "detect", "export"])
def test_every_val_detect_export_flag_is_a_run_parameter_that_is_read(script):
    params, loaded = _run_reads(ROOT / f"{script}.py")
    flags = _dests(script) - _refused(script)
    assert not flags - params, f"{script}.py flags that run() does not take: {sorted(flags - params)}"
    assert not flags - loaded, f"{script}.py flags that run() never reads: {sorted(flags - loaded)}"


REFUSED_CASES = [(script, flag) for script, flags in cli.REFUSED.items() for flag in flags]


@pytest.mark.parametrize(("script", "flag"), REFUSED_CASES)
def test_refused_flags_stop_with_a_message_naming_them(script, flag, tmp_path):
    base = {"train": ["--cfg", "yolov5n.yaml"], "val": [], "detect": [], "export": []}[script]
    project = ["--project", str(tmp_path)] if script in ("train", "val", "detect") else []
    module = {"train": train, "val": val, "detect": detect, "export": export}[script]
    opt = module.get_args_parser().parse_args([*base, *project, flag])  # accepted by argparse ...
    with pytest.raises(ValueError, match=f"^{flag} is not supported: "):  # ... then refused, before any work
        module.main(opt)
    assert not any(tmp_path.iterdir())


def test_train_kd_refuses_train_flags_and_bad_combinations_early(tmp_path):
    argv = ["--cfg", "yolov5n.yaml", "--teacher", str(tmp_path / "none.pt"), "--project", str(tmp_path)]
    with pytest.raises(ValueError, match="^--entity is not supported"):  # before the missing teacher
        train_kd.main(train_kd.parse_opt([*argv, "--entity", "me"]))
    with pytest.raises(ValueError, match="--local-rank 1 given but LOCAL_RANK is not set"):
        train.main(train.parse_opt(["--cfg", "yolov5n.yaml", "--local-rank", "1", "--project", str(tmp_path)]))
    with pytest.raises(ValueError, match="--sync-bn needs a DDP run on CUDA"):
        train.main(train.parse_opt(["--cfg", "yolov5n.yaml", "--sync-bn", "--device", "cpu",
                                    "--project", str(tmp_path)]))
    assert not any(tmp_path.iterdir())


def test_save_conf_without_save_txt_and_drawing_flags_with_nosave(tmp_path):
    with pytest.raises(ValueError, match="--save-conf .* add --save-txt"):
        val.run(data="coco8.yaml", save_conf=True, project=tmp_path)
    with pytest.raises(ValueError, match="--save-conf .* add --save-txt"):
        detect.run(save_conf=True, project=tmp_path)
    with pytest.raises(ValueError, match="--hide-labels, --hide-conf only change"):
        detect.run(nosave=True, hide_labels=True, hide_conf=True, project=tmp_path)
    assert not any(tmp_path.iterdir())


def test_view_img_shows_every_image_or_says_why_it_cannot(tmp_path, monkeypatch, untrained_checkpoint):
    import cv2

    weights = untrained_checkpoint("yolov5n.yaml", nc=2)
    source = tmp_path / "src"
    source.mkdir()
    for i in range(2):
        cv2.imwrite(str(source / f"im{i}.jpg"), np.full((48, 64, 3), 60 * i, np.uint8))
    if sys.platform.startswith("linux"):  # no display: a clear error naming the flag, before any output
        monkeypatch.delenv("DISPLAY", raising=False)
        monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
        with pytest.raises(ValueError, match="^--view-img: "):
            detect.run(weights=str(weights), source=str(source), imgsz=64, view_img=True, project=tmp_path / "a")
        assert not (tmp_path / "a").exists()
    shown = []
    monkeypatch.setattr(detect, "check_display", lambda: None)
    monkeypatch.setattr(cv2, "imshow", lambda title, im: shown.append((Path(title).name, im.shape)))
    monkeypatch.setattr(cv2, "waitKey", lambda delay: -1)
    result = detect.run(weights=str(weights), source=str(source), imgsz=64, view_img=True, nosave=True,
                        project=tmp_path, name="view")
    assert shown == [("im0.jpg", (48, 64, 3)), ("im1.jpg", (48, 64, 3))]
    assert not list(result.save_dir.glob("*.jpg"))  # --nosave: shown, not written


def test_detect_data_names_the_classes_and_must_match_the_model(tmp_path, untrained_checkpoint, caplog):
    import cv2
    import yaml

    weights = untrained_checkpoint("yolov5n.yaml", nc=2)
    image = tmp_path / "im.jpg"
    cv2.imwrite(str(image), np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    good, bad = tmp_path / "two.yaml", tmp_path / "three.yaml"
    good.write_text(yaml.safe_dump({"train": "x", "val": "x", "names": ["cat", "dog"]}))
    bad.write_text(yaml.safe_dump({"train": "x", "val": "x", "names": ["a", "b", "c"]}))
    with pytest.raises(ValueError, match=r"^--data .*three\.yaml has 3 classes but .* predicts 2"):
        detect.run(weights=str(weights), source=str(image), data=str(bad), imgsz=64, project=tmp_path / "x")
    with caplog.at_level("INFO", logger="detect"):
        result = detect.run(weights=str(weights), source=str(image), data=str(good), imgsz=64, conf_thres=0.0,
                            max_det=5, save_crop=True, project=tmp_path, name="names")
    assert {p.name for p in (result.save_dir / "crops").iterdir()} <= {"cat", "dog"}
    assert any((result.save_dir / "crops").iterdir()) and f"class names from {good}" in caplog.text


def test_kd_options_of_unused_methods_stop(tmp_path):
    base = ["--cfg", "yolov5n.yaml", "--teacher", str(tmp_path / "none.pt"), "--project", str(tmp_path)]
    with pytest.raises(ValueError, match=r"^--fgd-alpha is an option of --kd fgd, which this run does not use"):
        train_kd.main(train_kd.parse_opt([*base, "--kd", "cilf", "--fgd-alpha", "1e-4"]))
    with pytest.raises(ValueError, match="^--kd-decay-min is the floor of --kd-decay cosine"):
        train_kd.main(train_kd.parse_opt([*base, "--kd-decay-min", "0.1"]))
    with pytest.raises(ValueError, match="^--kd-adapter-kernel sizes the FGFI/CILF adapters, which --kd fgd does"):
        train_kd.main(train_kd.parse_opt([*base, "--kd", "fgd", "--kd-adapter-kernel", "1"]))
    with pytest.raises(FileNotFoundError, match="--teacher"):  # accepted: CILF reads the FGFI masks (psi, assign)
        train_kd.main(train_kd.parse_opt([*base, "--kd", "cilf", "--fgfi-psi", "0.3", "--fgfi-assign", "matched"]))


def test_flags_beside_resume_are_named_as_ignored(tmp_path, caplog):
    missing = tmp_path / "exp" / "weights" / "last.pt"
    with caplog.at_level("WARNING"), pytest.raises(FileNotFoundError, match="--resume checkpoint"):
        train.main(train.parse_opt(["--resume", str(missing), "--epochs", "5", "--noval"]))
    assert "ignoring --epochs, --noval" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"), pytest.raises(FileNotFoundError, match="--resume checkpoint"):
        train_kd.main(train_kd.parse_opt(["--resume", str(missing), "--kd", "cilf", "--epochs", "5"]))
    assert caplog.text.count("ignoring") == 2 and "ignoring --kd\n" in caplog.text and "ignoring --epochs" in caplog.text


def test_val_task_speed_refuses_thresholds_it_would_override():
    with pytest.raises(ValueError, match=r"^--conf-thres, --iou-thres: --task speed times NMS at"):
        val.main(val.parse_opt(["--task", "speed", "--conf-thres", "0.1", "--iou-thres", "0.5"]))


def test_autobatch_says_it_is_not_implemented(caplog):
    with caplog.at_level("WARNING", logger="train"):
        train.check_options(train.parse_opt(["--cfg", "yolov5n.yaml", "--batch-size", "-1"]))
    assert "--batch-size -1: AutoBatch is not implemented, training with batch size 16" in caplog.text


def test_command_line_bad_input_is_one_error_line(tmp_path, monkeypatch, capsys):
    """At the command line a bad-input error is one 'ERROR: ...' line and exit status 1 (YOLO_TRACEBACK=1: raised)."""
    def main(opt):
        raise ValueError(f"{opt.weights}: a text file, not a PyTorch checkpoint")

    opt = train.parse_opt(["--weights", str(tmp_path / "w.pt")])
    with pytest.raises(SystemExit) as e:
        cli.main_or_exit(main, opt)
    assert e.value.code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"ERROR: {tmp_path / 'w.pt'}: a text file, not a PyTorch")
    monkeypatch.setenv("YOLO_TRACEBACK", "1")
    with pytest.raises(ValueError, match="a text file"):
        cli.main_or_exit(main, opt)
    monkeypatch.delenv("YOLO_TRACEBACK")

    def buggy(opt):
        raise RuntimeError("bug")

    with pytest.raises(RuntimeError):  # not bad input: a bug keeps its traceback
        cli.main_or_exit(buggy, opt)


def test_train_script_prints_one_line_for_a_bad_weights_file(tmp_path):
    bad = tmp_path / "notes.pt"
    bad.write_text("not weights\n")
    done = subprocess.run([sys.executable, str(ROOT / "train.py"), "--weights", str(bad), "--cfg", "yolov5n.yaml",
                           "--project", str(tmp_path / "runs")], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith(f"ERROR: {bad}: a text file, not a PyTorch checkpoint")
    assert not (tmp_path / "runs").exists()


def test_export_onnx_options_without_onnx_stop(tmp_path):
    with pytest.raises(ValueError, match=r"^--opset, --dynamic: ONNX options, and --include torchscript exports no"):
        export.run(weights=str(tmp_path / "w.pt"), include=("torchscript",), opset=19, dynamic=True)
