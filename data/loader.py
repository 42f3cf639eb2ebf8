"""Data loaders: seeded, reproducible, with worker processes kept alive across epochs."""
from __future__ import annotations

import math
import os

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, distributed

from data.dataset import LoadImagesAndLabels, info
from utils import seed as seeding

PIN_MEMORY = str(os.getenv("PIN_MEMORY", "True")).lower() == "true"


class InfiniteDataLoader(DataLoader):
    """A DataLoader whose workers survive between epochs: it iterates one endless batch sampler and hands
    out ``len(self)`` batches per ``iter()``. Each epoch still reshuffles (the sampler is re-iterated).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        object.__setattr__(self, "batch_sampler", _RepeatSampler(self.batch_sampler))
        self._iterator = super().__iter__()

    def __len__(self):
        return len(self.batch_sampler.sampler)

    def __iter__(self):
        for _ in range(len(self)):
            yield next(self._iterator)

    def skip(self, batches: int) -> None:
        """Draw the next ``batches`` batches of indices without loading them, so that a resumed run (a new loader,
        the same seed) shuffles on exactly as the interrupted one did: the shuffle's draws, including
        RandomSampler's trailing one between epochs, come from torch's own samplers. With 0 workers only: worker
        processes have already been handed indices (ValueError)."""
        if self.num_workers:
            raise ValueError("InfiniteDataLoader.skip needs workers=0 (workers prefetch their indices)")
        for _ in range(batches):
            next(self._iterator._sampler_iter)


class _RepeatSampler:
    def __init__(self, sampler):
        self.sampler = sampler

    def __iter__(self):
        while True:
            yield from iter(self.sampler)


def seed_worker(worker_id: int) -> None:
    """worker_init_fn: seed the worker from torch's per-worker seed (utils.seed) and give its dataset its own RNG.

    (Resizing OpenCV's thread pool here deadlocks a forked worker whose parent already used it: leave it.)
    """
    seeding.seed_worker(worker_id)
    worker = torch.utils.data.get_worker_info()
    if worker is not None and hasattr(worker.dataset, "rng"):
        worker.dataset.rng = np.random.default_rng(torch.initial_seed() % 2**32)


def create_dataloader(path, imgsz, batch_size, stride, single_cls=False, hyp=None, augment=False, cache=False,
                      pad=0.0, rect=False, rank=-1, workers=8, image_weights=False, prefix="", shuffle=False,
                      seed=0, nc=None, labels_dir=None, quad=False):
    """Build the dataset and its loader -> (loader, dataset).

    Batches are (imgs (B,3,H,W) uint8 RGB, targets (N,6) [img_idx, cls, x, y, w, h] normalised, paths,
    shapes). ``cache`` is False, 'ram' or 'disk'. ``rank`` != -1 uses a DistributedSampler. The same
    ``seed`` gives the same batches and augmentations (for a fixed worker count). ``quad`` (--quad) collates
    with ``quad_collate``: batches of B/4 images at twice the size.
    """
    if rect and shuffle:
        info(f"{prefix}WARNING: --rect is incompatible with DataLoader shuffle, setting shuffle=False")
        shuffle = False
    dataset = LoadImagesAndLabels(path, imgsz, batch_size, augment=augment, hyp=hyp, rect=rect,
                                  image_weights=image_weights, cache_images=cache, single_cls=single_cls,
                                  stride=int(stride), pad=pad, prefix=prefix, nc=nc, labels_dir=labels_dir,
                                  seed=seed + max(rank, 0))
    batch_size = min(batch_size, len(dataset))
    nd = max(torch.cuda.device_count(), 1)
    nw = min((os.cpu_count() or 1) // nd, batch_size if batch_size > 1 else 0, workers)
    sampler = None if rank == -1 else distributed.DistributedSampler(dataset, shuffle=shuffle, seed=seed)
    loader_cls = DataLoader if image_weights else InfiniteDataLoader
    generator = torch.Generator()
    generator.manual_seed(6148914691236517205 + seed + max(rank, 0))
    loader = loader_cls(dataset, batch_size=batch_size, shuffle=shuffle and sampler is None, num_workers=nw,
                        sampler=sampler, pin_memory=PIN_MEMORY and torch.cuda.is_available(),
                        collate_fn=quad_collate if quad else LoadImagesAndLabels.collate_fn, worker_init_fn=seed_worker,
                        generator=generator, persistent_workers=False)
    return loader, dataset


# column offsets of the four quarters in normalised [img_idx, cls, x, y, w, h] rows: the images go
# top-left, bottom-left, top-right, bottom-right; every coordinate halves
_QUARTER_SHIFT = torch.tensor([[0, 0, 0, 0, 0, 0], [0, 0, 0, 1, 0, 0], [0, 0, 1, 0, 0, 0], [0, 0, 1, 1, 0, 0]])
_QUARTER_SCALE = torch.tensor([1, 1, 0.5, 0.5, 0.5, 0.5])


def quad_collate(batch):
    """--quad (upstream's collate_fn4): each group of 4 images becomes one image of twice the side.

    With probability 0.5 the group's first image is upsampled x2 (bilinear) with its labels, otherwise the four
    are tiled 2x2 and their labels shifted and halved. Returns ``(imgs (ceil(B/4),3,2H,2W) uint8, targets (N,6),
    paths, shapes)`` with each group's first path and shape. A last group of fewer than 4 images (where
    upstream would drop them, and a batch of under 4 would be empty) has each image upsampled on its own.
    The loop multiplies the loss by 4 (the batch has a quarter of the images).
    """
    imgs, targets, paths, shapes = LoadImagesAndLabels.collate_fn(batch)
    n_full = len(imgs) // 4
    out_imgs, out_targets, out_paths, out_shapes = [], [], [], []
    groups = [list(range(4 * g, 4 * g + 4)) for g in range(n_full)] + [[i] for i in range(4 * n_full, len(imgs))]
    for j, members in enumerate(groups):
        rows = [targets[targets[:, 0] == i] for i in members]
        if len(members) == 4 and torch.rand(()) >= 0.5:
            a, b, c, d = (imgs[i] for i in members)
            image = torch.cat((torch.cat((a, b), 1), torch.cat((c, d), 1)), 2)  # (3, 2H, 2W)
            label = torch.cat([r + _QUARTER_SHIFT[k] for k, r in enumerate(rows)], 0) * _QUARTER_SCALE
        else:
            image = F.interpolate(imgs[members[0]][None].float(), scale_factor=2.0, mode="bilinear",
                                  align_corners=False)[0].round().clamp(0, 255).to(imgs.dtype)
            label = rows[0].clone()
        label[:, 0] = j
        out_imgs.append(image)
        out_targets.append(label)
        out_paths.append(paths[members[0]])
        out_shapes.append(shapes[members[0]])
    return torch.stack(out_imgs, 0), torch.cat(out_targets, 0), tuple(out_paths), tuple(out_shapes)


def random_imgsz(imgsz: int, stride: int, rng: np.random.Generator) -> int:
    """Multi-scale hook: a size in [0.5, 1.5] x imgsz rounded down to a multiple of ``stride``."""
    sz = rng.uniform(imgsz * 0.5, imgsz * 1.5 + stride)
    return max(stride, int(sz // stride * stride))


def resize_batch(imgs: torch.Tensor, size: int, stride: int = 32) -> torch.Tensor:
    """Resize a float (B,3,H,W) batch so its long side is ``size``, sides rounded up to multiples of
    ``stride``; targets are normalised, so they need no change."""
    sf = size / max(imgs.shape[2:])
    if sf == 1:
        return imgs
    new = [math.ceil(x * sf / stride) * stride for x in imgs.shape[2:]]
    return F.interpolate(imgs, size=new, mode="bilinear", align_corners=False)
