"""Checkpoint round trips, atomic writes, upstream import and refusal of code in pickles."""
import os
import pickle

import pytest
import torch

from models.weights import load_checkpoint, load_model, model_from_record, model_record
from models.yolo import Model
from utils import checkpoint


def test_record_round_trip_with_weights_only(tmp_path):
    model = Model("yolov5n.yaml", nc=3)
    model.names = {0: "RBC", 1: "WBC", 2: "Platelets"}
    path = checkpoint.save_checkpoint({"epoch": 3, "model": model_record(model), "ema": None}, tmp_path / "a.pt")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)  # plain data only
    assert ckpt["epoch"] == 3
    rebuilt = model_from_record(ckpt["model"])
    assert rebuilt.names == model.names
    for (k, a), (_, b) in zip(model.state_dict().items(), rebuilt.state_dict().items()):
        assert torch.equal(a.half().float() if a.is_floating_point() else a, b), k
    assert list(os.listdir(tmp_path)) == ["a.pt"]  # no temp files left behind


def test_atomic_write_keeps_old_file_when_save_crashes(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    checkpoint.save_checkpoint({"epoch": 1}, path)

    def crash(obj, f):
        f.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save_checkpoint({"epoch": 2}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True) == {"epoch": 1}
    assert list(os.listdir(tmp_path)) == ["last.pt"]


def test_upstream_v61_checkpoint_imports(yolov5n_pt):
    model = load_model(yolov5n_pt, fuse=False)
    assert sum(p.numel() for p in model.parameters()) == 1_872_157
    assert model.names[0] == "person" and len(model.names) == 80
    assert model.stride.tolist() == [8.0, 16.0, 32.0]
    raw = checkpoint.safe_load(yolov5n_pt)["model"]
    assert isinstance(raw, checkpoint.UpstreamModule)  # inert stand-in, not upstream code
    ours = model.state_dict()
    for k, v in raw.state_dict().items():
        assert torch.equal(ours[k], v.float()), k


def test_upstream_v7_teacher_imports(bccd_teacher_pt):
    ckpt = load_checkpoint(bccd_teacher_pt)
    model = model_from_record(ckpt["model"])
    assert sum(p.numel() for p in model.parameters()) == 7_027_720
    assert model.names == {0: "RBC", 1: "WBC", 2: "Platelets"}


class _Exploit:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_checkpoint_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "pwned"
    exploit = _Exploit()
    exploit.marker = marker
    bad = tmp_path / "evil.pt"
    torch.save({"model": exploit, "epoch": 0}, bad)
    with pytest.raises(checkpoint.UnsafeCheckpointError, match=r"evil\.pt.*(posix|os)\.system"):
        checkpoint.safe_load(bad)
    with pytest.raises(pickle.UnpicklingError):
        load_model(bad)
    assert not marker.exists()


def test_mismatched_weights_are_named(tmp_path):
    record = model_record(Model("yolov5n.yaml", nc=3))
    record["yaml"] = dict(record["yaml"], nc=80)
    with pytest.raises(ValueError, match=r"shape mismatch: .*model\.24\.m\.0\.weight \(24, 64, 1, 1\) vs model \(255, 64, 1, 1\)"):
        model_from_record(record)
    record = model_record(Model("yolov5n.yaml"))
    del record["state_dict"]["model.0.conv.weight"]
    with pytest.raises(ValueError, match=r"missing: model\.0\.conv\.weight"):
        model_from_record(record)


def test_garbage_file_gives_clear_error(tmp_path):
    bad = tmp_path / "notes.pt"
    bad.write_text("hello")
    with pytest.raises(ValueError, match="notes.pt: a text file, not a PyTorch checkpoint"):
        checkpoint.safe_load(bad)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        checkpoint.safe_load(tmp_path / "missing.pt")
