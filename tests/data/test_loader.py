"""Loader: batch format, seeded determinism, worker reuse, rect shapes, image caches, label-cache invalidation."""
from __future__ import annotations

import os

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from data import cache
from data.dataset import LoadImagesAndLabels
from data.images import img2label_paths, read_image
from data.loader import create_dataloader, random_imgsz, resize_batch
from tests.data.synth import make_yolo_dataset, write_image

HYP = dict(hsv_h=0.015, hsv_s=0.7, hsv_v=0.4, degrees=5.0, translate=0.1, scale=0.5, shear=0.0,
           perspective=0.0, flipud=0.0, fliplr=0.5, mosaic=1.0, mixup=0.2, copy_paste=0.0)


def _batches(src, seed, workers=0, n=2, **kw):
    loader, _ = create_dataloader(str(src), 64, 4, 32, hyp=HYP, augment=True, shuffle=True, workers=workers,
                                  seed=seed, **kw)
    it = iter(loader)
    return [next(it) for _ in range(n)]


def test_batch_format(tmp_path):
    src = make_yolo_dataset(tmp_path / "ds", n=6)
    imgs, targets, paths, shapes = _batches(src, seed=0, n=1)[0]
    assert imgs.shape == (4, 3, 64, 64) and imgs.dtype == torch.uint8
    assert targets.ndim == 2 and targets.shape[1] == 6 and targets.dtype == torch.float32
    assert set(targets[:, 0].long().tolist()) <= {0, 1, 2, 3}
    assert ((targets[:, 2:] >= 0) & (targets[:, 2:] <= 1)).all()
    assert len(paths) == 4 and shapes == (None,) * 4


@pytest.mark.parametrize("workers", [0, 2])
def test_same_seed_same_batches(tmp_path, workers):
    src = make_yolo_dataset(tmp_path / "ds", n=8)
    a, b = _batches(src, 1, workers), _batches(src, 1, workers)
    c = _batches(src, 2, workers)
    for (ia, ta, pa, _), (ib, tb, pb, _) in zip(a, b):
        assert pa == pb and torch.equal(ia, ib) and torch.equal(ta, tb)
    assert not all(torch.equal(x[0], y[0]) for x, y in zip(a, c))


def test_infinite_loader_reuses_workers_and_reshuffles(tmp_path):
    src = make_yolo_dataset(tmp_path / "ds", n=8)
    loader, _ = create_dataloader(str(src), 64, 4, 32, augment=False, shuffle=True, workers=2)
    it0 = loader._iterator
    epochs = [[p for _, _, paths, _ in loader for p in paths] for _ in range(3)]
    assert len(loader) == 2 and all(sorted(e) == sorted(epochs[0]) and len(e) == 8 for e in epochs)
    assert loader._iterator is it0 and len({tuple(e) for e in epochs}) > 1


def test_rect_batches_and_val_shapes(tmp_path):
    src = tmp_path / "ds" / "images"
    for i, (w, h) in enumerate([(100, 50), (100, 60), (50, 100), (60, 100)]):
        write_image(src / f"{i}.png", w, h)
    loader, ds = create_dataloader(str(src), 64, 2, 32, rect=True, pad=0.5, shuffle=True)
    # sorted by h/w: 0.5, 0.6 -> [maxi=0.6, 1]; 1.67, 2 -> [1, 1/1.67]; ceil(shape*64/32 + 0.5)*32
    np.testing.assert_array_equal(ds.batch_shapes, [[64, 96], [96, 64]])
    shapes = [tuple(imgs.shape[2:]) for imgs, *_ in loader]
    assert shapes == [(64, 96), (96, 64)]


def test_cache_ram_and_disk_give_the_same_images(tmp_path, isolated_cache):
    src = make_yolo_dataset(tmp_path / "ds", n=3)
    plain = LoadImagesAndLabels(str(src), 64)
    ram = LoadImagesAndLabels(str(src), 64, cache_images="ram")
    disk = LoadImagesAndLabels(str(src), 64, cache_images="disk")
    for i in range(3):
        assert torch.equal(plain[i][0], ram[i][0]) and torch.equal(plain[i][0], disk[i][0])
    npy = list(isolated_cache.rglob("*.npy"))
    assert len(npy) == 3 and not list((tmp_path / "ds").rglob("*.npy"))


def test_label_cache_is_used_and_invalidated_by_same_size_edit(tmp_path, monkeypatch):
    src = make_yolo_dataset(tmp_path / "ds", n=2)
    ds = LoadImagesAndLabels(str(src), 64, nc=8)
    assert (tmp_path / "ds" / "labels" / "train.cache.npz").is_file()
    import data.dataset as dataset_mod

    def no_verify(*a):
        raise AssertionError("labels were verified again although nothing changed")

    monkeypatch.setattr(dataset_mod, "verify_pair", no_verify)
    again = LoadImagesAndLabels(str(src), 64, nc=8)
    assert all(np.array_equal(a, b) for a, b in zip(ds.labels, again.labels))
    monkeypatch.undo()
    lb = tmp_path / "ds" / "labels" / "train" / "im0.txt"
    text = lb.read_text()
    old_cls = text[0]
    new_cls = "7" if old_cls != "7" else "6"
    st = os.stat(lb)
    lb.write_text(new_cls + text[1:])  # same byte size
    os.utime(lb, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert os.stat(lb).st_size == st.st_size
    edited = LoadImagesAndLabels(str(src), 64, nc=8)
    assert edited.labels[0][0, 0] == int(new_cls)


def test_cache_version_mismatch_rebuilds(tmp_path, monkeypatch):
    src = make_yolo_dataset(tmp_path / "ds", n=1)
    LoadImagesAndLabels(str(src), 64)
    monkeypatch.setattr(cache, "VERSION", "other")
    key = cache.files_hash([str(f) for f in sorted(src.iterdir())], None)
    assert cache.load_cache(tmp_path / "ds" / "labels" / "train.cache.npz", key)[0] is None


def test_read_only_label_folder_only_warns(tmp_path, isolated_cache, caplog):
    src = make_yolo_dataset(tmp_path / "ds", n=1)
    labels = tmp_path / "ds" / "labels"
    labels.chmod(0o555)
    try:
        LoadImagesAndLabels(str(src), 64)
    finally:
        labels.chmod(0o755)
    assert "is not writeable" in caplog.text
    assert not (labels / "train.cache.npz").exists() and list((isolated_cache / "labels").glob("*.cache.npz"))


def test_image_reading_modes(tmp_path):
    gray = np.tile(np.arange(40, dtype=np.uint8), (30, 1))
    cv2.imwrite(str(tmp_path / "g.PNG"), gray)
    cv2.imwrite(str(tmp_path / "d16.png"), (gray.astype(np.uint16) * 256))
    rgba = np.dstack([np.full((30, 40, 3), (10, 20, 30), np.uint8), np.full((30, 40), 128, np.uint8)])
    cv2.imwrite(str(tmp_path / "a.png"), rgba)
    for name, expect in [("g.PNG", gray[..., None]), ("d16.png", gray[..., None]), ("a.png", (10, 20, 30))]:
        im = read_image(tmp_path / name)
        assert im.shape == (30, 40, 3) and im.dtype == np.uint8
        assert np.abs(im.astype(int) - np.broadcast_to(expect, im.shape)).max() <= 1, name


def test_exif_rotation_applies_to_image_and_size(tmp_path):
    from data.verify import verify_pair

    im = Image.new("RGB", (60, 20), (255, 0, 0))
    exif = Image.Exif()
    exif[274] = 6  # rotate 90 degrees when displayed
    f = tmp_path / "images" / "r.JPG"
    f.parent.mkdir()
    im.save(f, exif=exif)
    assert read_image(f).shape == (60, 20, 3)
    assert verify_pair(str(f), str(tmp_path / "labels" / "r.txt")).shape == (20, 60)


def test_label_path_rule():
    assert img2label_paths(["/a/images/x/images/b/c.JPG"]) == ["/a/images/x/labels/b/c.txt"]
    assert img2label_paths(["/a/img/c.png"], labels_dir="/l") == ["/l/c.txt"]


def test_multiscale_hooks():
    rng = np.random.default_rng(0)
    sizes = {random_imgsz(64, 32, rng) for _ in range(50)}
    assert sizes <= {32, 64, 96} and len(sizes) > 1
    assert resize_batch(torch.zeros(2, 3, 64, 64), 96).shape == (2, 3, 96, 96)


def test_distributed_sampler_when_rank_is_set(tmp_path):
    import torch.distributed as dist

    src = make_yolo_dataset(tmp_path / "ds", n=4)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        loader, _ = create_dataloader(str(src), 64, 2, 32, rank=0, shuffle=True, workers=0)
        assert isinstance(loader.sampler, torch.utils.data.distributed.DistributedSampler)
        assert sorted(p for _, _, paths, _ in loader for p in paths) == sorted(str(f) for f in src.iterdir())
    finally:
        dist.destroy_process_group()


def test_polygon_labels_through_mosaic_and_copy_paste(tmp_path):
    src = make_yolo_dataset(tmp_path / "ds", n=4)
    for lb in (tmp_path / "ds" / "labels" / "train").iterdir():  # rewrite boxes as 4-point polygons
        rows = []
        for c, x, y, w, h in np.loadtxt(lb, ndmin=2):
            x1, y1, x2, y2 = x - w / 2, y - h / 2, x + w / 2, y + h / 2
            rows.append(f"{int(c)} {x1:.6f} {y1:.6f} {x2:.6f} {y1:.6f} {x2:.6f} {y2:.6f} {x1:.6f} {y2:.6f}")
        lb.write_text("\n".join(rows) + "\n")
    ds = LoadImagesAndLabels(str(src), 64, augment=True, hyp={**HYP, "copy_paste": 1.0, "mixup": 0.0}, seed=0)
    assert all(len(s) == len(lb) == 2 for s, lb in zip(ds.segments, ds.labels))
    targets = [ds[i % 4][1] for i in range(8)]
    assert max(len(t) for t in targets) > 2  # mosaic tiles of several images (plus pasted copies) survive
    assert all(((t[:, 2:] >= 0) & (t[:, 2:] <= 1)).all() for t in targets)


@pytest.mark.parametrize("n, batch_size", [(8, 4), (10, 4)])  # RandomSampler's trailing draw pending / taken
def test_skip_continues_the_shuffle_of_an_uninterrupted_loader(n, batch_size):
    """A resumed run builds a new loader with the same seed and skips the batches already trained."""
    from data.loader import InfiniteDataLoader

    def loader(workers=0):
        return InfiniteDataLoader(list(range(n)), batch_size=batch_size, shuffle=True, num_workers=workers,
                                  generator=torch.Generator().manual_seed(7))

    uninterrupted = loader()
    epochs = [[b.tolist() for b in uninterrupted] for _ in range(4)]
    assert epochs[2] != epochs[3]  # reshuffled every epoch
    resumed = loader()
    resumed.skip(2 * len(resumed))
    assert [[b.tolist() for b in resumed] for _ in range(2)] == epochs[2:]
    with pytest.raises(ValueError, match="workers=0"):
        loader(workers=1).skip(1)


def _quad_items(n: int, size: int = 8):
    """n (image, labels, path, shape) items: image k is the constant 10 * (k + 1), with one box at (0.25, 0.75)."""
    items = []
    for k in range(n):
        im = torch.full((3, size, size), 10 * (k + 1), dtype=torch.uint8)
        lb = torch.tensor([[0, k, 0.25, 0.75, 0.5, 0.5]])
        items.append((im, lb, f"im{k}.jpg", None))
    return items


def test_quad_collate_tiles_or_upsamples_groups_of_four():
    from data.loader import quad_collate

    seen = set()
    for seed in range(8):  # both branches come up
        torch.manual_seed(seed)
        imgs, targets, paths, _ = quad_collate(_quad_items(8))
        assert imgs.shape == (2, 3, 16, 16) and imgs.dtype == torch.uint8 and paths == ("im0.jpg", "im4.jpg")
        for j in range(2):
            rows = targets[targets[:, 0] == j]
            first = 4 * j
            if len(rows) == 4:  # tiled: quarter k holds image first + k, its box shifted and halved
                seen.add("tiled")
                expected = {(first, 0.125, 0.375), (first + 1, 0.125, 0.875), (first + 2, 0.625, 0.375),
                            (first + 3, 0.625, 0.875)}
                assert {(int(r[1]), float(r[2]), float(r[3])) for r in rows} == expected
                assert rows[:, 4:].eq(0.25).all()
                for k, (y, x) in enumerate(((0, 0), (8, 0), (0, 8), (8, 8))):
                    assert imgs[j, :, y:y + 8, x:x + 8].eq(10 * (first + k + 1)).all()
            else:  # upsampled: the group's first image and its label, unchanged
                seen.add("upsampled")
                assert rows.tolist() == [[j, first, 0.25, 0.75, 0.5, 0.5]]
                assert imgs[j].eq(10 * (first + 1)).all()
    assert seen == {"tiled", "upsampled"}


def test_quad_collate_keeps_a_short_last_group():
    from data.loader import quad_collate

    imgs, targets, paths, _ = quad_collate(_quad_items(6))
    assert imgs.shape[0] == 3 and paths[1:] == ("im4.jpg", "im5.jpg")  # 1 group of 4, then 2 upsampled singles
    assert targets[targets[:, 0] == 2, 1].tolist() == [5]
    assert imgs[2].eq(60).all()
