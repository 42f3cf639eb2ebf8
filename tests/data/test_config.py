"""Dataset yaml resolution: names, nc, relative paths (yaml folder, DATASETS_DIR, repo root), downloads."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from data import config
from tests.data.synth import make_yolo_dataset


def _yaml(file: Path, **d) -> Path:
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(yaml.safe_dump(d))
    return file


def test_relative_path_resolves_against_the_yaml_folder_first(tmp_path, monkeypatch):
    make_yolo_dataset(tmp_path / "cfg" / "ds", n=1)
    make_yolo_dataset(tmp_path / "root" / "ds", n=1)
    monkeypatch.setenv("DATASETS_DIR", str(tmp_path / "root"))
    monkeypatch.chdir(tmp_path)
    f = _yaml(tmp_path / "cfg" / "d.yaml", path="ds", train="images/train", val="images/train", names=["a", "b"])
    d = config.check_dataset(str(f))
    assert d["path"] == str(tmp_path / "cfg" / "ds")
    assert d["train"] == str(tmp_path / "cfg" / "ds" / "images" / "train")
    assert d["names"] == {0: "a", 1: "b"} and d["nc"] == 2 and d["test"] is None
    assert d["yaml_file"] == str(f)


def test_relative_path_falls_back_to_datasets_dir(tmp_path, monkeypatch):
    make_yolo_dataset(tmp_path / "root" / "ds", n=1)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATASETS_DIR", "root")  # relative to the CWD
    f = _yaml(tmp_path / "cfg" / "d.yaml", path="ds", train="images/train", val=["images/train"],
              names={0: "x"}, nc=5)
    d = config.check_dataset(f)
    assert d["path"] == str(tmp_path / "root" / "ds")
    assert d["val"] == [str(tmp_path / "root" / "ds" / "images" / "train")]
    assert d["nc"] == 1  # derived from names, explicit nc overridden


def test_no_path_key_means_yaml_folder_and_absolute_entries_stay(tmp_path):
    src = make_yolo_dataset(tmp_path / "ds", n=1)
    f = _yaml(tmp_path / "ds" / "d.yaml", train="images/train", val=str(src), nc=2)
    d = config.check_dataset(f)
    assert d["train"] == str(src) and d["val"] == str(src)
    assert d["names"] == {0: "class0", 1: "class1"}


def test_dict_input_and_labels_override(tmp_path):
    src = make_yolo_dataset(tmp_path / "ds", n=1)
    d = config.check_dataset({"path": str(tmp_path / "ds"), "train": "images/train", "val": "images/train",
                              "names": ["a"], "labels": "labels/train"})
    assert d["labels"] == str(tmp_path / "ds" / "labels" / "train") and d["train"] == str(src)


def test_shipped_yaml_found_by_name_and_coco_names():
    d = yaml.safe_load((config.ROOT / "data" / "coco8.yaml").read_text())
    names = config.parse_names(d["names"])
    assert len(names) == 80 and names[0] == "person" and names[79] == "toothbrush"
    assert config._load("BCCD.yaml")[0] == config.ROOT / "data" / "BCCD.yaml"


@pytest.mark.parametrize("names", [{"0": "a"}, {0: "a", 2: "b"}, "abc"])
def test_bad_names_raise(names):
    with pytest.raises(ValueError):
        config.parse_names(names)


def test_missing_dataset_names_paths_and_download_source(tmp_path, monkeypatch):
    monkeypatch.setenv("DATASETS_DIR", str(tmp_path / "nowhere"))
    f = _yaml(tmp_path / "d.yaml", path="coco8", train="images/train", val="images/val", names=["a"],
              download="https://example.invalid/coco8.zip")
    with pytest.raises(FileNotFoundError) as e:
        config.check_dataset(f)
    msg = str(e.value)
    assert str(tmp_path / "nowhere" / "coco8" / "images" / "val") in msg and "https://example.invalid/coco8.zip" in msg


def test_code_in_download_is_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    f = _yaml(tmp_path / "d.yaml", train="nope", val="nope", names=["a"],
              download=f"import pathlib; pathlib.Path('{marker}').touch()")
    with pytest.raises(ValueError, match="never executed"):
        config.check_dataset(f, autodownload=True)
    assert not marker.exists()


def test_offline_download_names_url_and_target(tmp_path, monkeypatch):
    import urllib.request

    def offline(*a, **k):
        raise OSError("network is unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    f = _yaml(tmp_path / "d.yaml", path=str(tmp_path / "ds"), train="images/train", val="images/val",
              names=["a"], download="https://example.invalid/ds.zip")
    with pytest.raises(ConnectionError) as e:
        config.check_dataset(f, autodownload=True)
    assert "https://example.invalid/ds.zip" in str(e.value) and str(tmp_path) in str(e.value)


def test_txt_list_with_dot_slash_lines(tmp_path):
    from data.images import list_image_files

    src = make_yolo_dataset(tmp_path / "ds", n=2)
    lst = tmp_path / "ds" / "train.txt"
    lst.write_text("./images/train/im0.png\n\n" + str(src / "im1.png") + "\n./images/train/notes.md\n")
    assert list_image_files(str(lst)) == [str(src / "im0.png"), str(src / "im1.png")]


def test_shared_coco8_via_datasets_dir(coco8_dir, monkeypatch):
    monkeypatch.setenv("DATASETS_DIR", str(coco8_dir.parent))
    d = config.check_dataset("coco8.yaml")
    assert d["train"] == str(coco8_dir / "images" / "train") and d["nc"] == 80 and d.get("labels") is None


def test_yaml_paths_may_point_outside_but_must_exist(tmp_path, monkeypatch, caplog):
    """The rule (data/config.py docstring): entries may be absolute or ``../`` (upstream allows both), and must exist;
    a missing train/val/labels is an error naming the yaml, key and path, a missing test a warning; the yaml and
    the data are never modified."""
    monkeypatch.setenv("DATASETS_DIR", str(tmp_path / "nowhere"))
    make_yolo_dataset(tmp_path / "elsewhere" / "ds", n=1)
    outside = tmp_path / "elsewhere" / "ds" / "images" / "train"
    f = _yaml(tmp_path / "cfg" / "ok.yaml", train=str(outside), val="../elsewhere/ds/images/train", names=["a", "b"])
    before = f.read_bytes()
    with caplog.at_level("WARNING"):
        d = config.check_dataset(f)
        assert d["train"] == d["val"] == str(outside) and not caplog.text  # outside the yaml's folder: fine
        config.check_dataset(_yaml(tmp_path / "cfg" / "t.yaml", train=str(outside), val=str(outside),
                                   test="images/test", names=["a"]))
    assert f"{tmp_path / 'cfg' / 't.yaml'}: test: {tmp_path / 'cfg' / 'images' / 'test'} not found" in caplog.text
    cases = {"val": {"train": str(outside), "val": str(tmp_path / "gone" / "val")},
             "train": {"train": "../gone/train", "val": str(outside)},
             "labels": {"train": str(outside), "val": str(outside), "labels": "../no_labels"}}
    for key, entries in cases.items():
        bad = _yaml(tmp_path / "cfg" / f"bad_{key}.yaml", names=["a"], **entries)
        with pytest.raises(FileNotFoundError) as e:
            config.check_dataset(bad)
        message = str(e.value)
        missing = tmp_path / {"val": "gone/val", "train": "gone/train", "labels": "no_labels"}[key]
        assert "\n" not in message and message.startswith(f"{bad}: ") and f"{key}: {missing}" in message, message
    assert f.read_bytes() == before and sorted(p.name for p in outside.iterdir()) == ["im0.png"]
