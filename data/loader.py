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
                      seed=0, nc=None, labels_dir=None):
    """Build the dataset and its loader -> (loader, dataset).

    Batches are (imgs (B,3,H,W) uint8 RGB, targets (N,6) [img_idx, cls, x, y, w, h] normalised, paths,
    shapes). ``cache`` is False, 'ram' or 'disk'. ``rank`` != -1 uses a DistributedSampler. The same
    ``seed`` gives the same batches and augmentations (for a fixed worker count).
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
                        collate_fn=LoadImagesAndLabels.collate_fn, worker_init_fn=seed_worker,
                        generator=generator, persistent_workers=False)
    return loader, dataset


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
