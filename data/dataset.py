"""The detection dataset: verified images and YOLO labels, letterbox or mosaic augmentation, rect batches."""
from __future__ import annotations

import hashlib
import logging
import math
import os
import sys
from multiprocessing.pool import ThreadPool
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from data import augment, cache
from data.images import img2label_paths, list_image_files, read_image
from data.verify import verify_pair
from utils import boxes
from utils.letterbox import letterbox

LOGGER = logging.getLogger("yolov5.data")
NUM_THREADS = min(8, max(1, (os.cpu_count() or 1)))
DEFAULT_HYP = dict(hsv_h=0.015, hsv_s=0.7, hsv_v=0.4, degrees=0.0, translate=0.1, scale=0.5, shear=0.0,
                   perspective=0.0, flipud=0.0, fliplr=0.5, mosaic=1.0, mixup=0.0, copy_paste=0.0)


def info(msg: str) -> None:
    """Log at INFO, or print to stderr when the application configured no logging at all."""
    if LOGGER.hasHandlers():
        LOGGER.info(msg)
    else:
        print(msg, file=sys.stderr, flush=True)


class LoadImagesAndLabels(Dataset):
    """Images with YOLO labels. Items are (img (3,H,W) uint8 RGB, labels (n,6) [0, cls, x, y, w, h]
    normalised, path, shapes) with ``shapes = ((h0, w0), ((gain_h, gain_w), (padw, padh)))`` or None for
    mosaic samples.

    Attributes: ``im_files``, ``labels`` (list of (n,5) float32), ``segments``, ``shapes`` (n,2) (w, h),
    ``batch_shapes`` (rect only), ``indices`` (overwritable by image-weighted sampling).
    """

    def __init__(self, path, img_size=640, batch_size=16, augment=False, hyp=None, rect=False,
                 image_weights=False, cache_images=False, single_cls=False, stride=32, pad=0.0,
                 prefix="", nc=None, labels_dir=None, seed=0):
        self.img_size, self.augment, self.stride = img_size, augment, stride
        self.hyp = {**DEFAULT_HYP, **(hyp or {})}
        self.image_weights, self.rect = image_weights, (False if image_weights else rect)
        self.mosaic = augment and not self.rect
        self.rng = np.random.default_rng(seed)
        self.prefix = prefix
        try:
            im_files = list_image_files(path)
        except FileNotFoundError as e:
            raise FileNotFoundError(f"{prefix}{e}") from e
        if not im_files:
            raise FileNotFoundError(f"{prefix}no images found in {path} (formats: jpg, png, bmp, tif, webp, ...)")
        label_files = img2label_paths(im_files, labels_dir)
        records = self._verify(path, im_files, label_files, nc, labels_dir)
        self._keep(records, single_cls)
        if not self.im_files:
            raise RuntimeError(f"{prefix}no usable images in {path}: every image was corrupt (see warnings)")
        if augment and not any(len(lb) for lb in self.labels):
            raise RuntimeError(f"{prefix}no labels found for {path}: expected e.g. {label_files[0]} "
                               "(rule: last /images/ -> /labels/, or a yaml `labels:` folder)")
        self.indices = np.arange(len(self.im_files))
        if self.rect:
            self._set_rect(batch_size, pad)
        self.ims = [None] * len(self.im_files)
        self.npy_files = [None] * len(self.im_files)
        if cache_images:
            self.cache_images(cache_images)

    # ---- labels -------------------------------------------------------------------------------------
    def _verify(self, path, im_files, label_files, nc, labels_dir):
        cache_path = _cache_path(path, label_files, labels_dir)
        key = cache.files_hash(im_files + label_files, nc)
        records, cache_path = cache.load_cache(cache_path, key)
        if records is None:
            with ThreadPool(NUM_THREADS) as pool:
                records = pool.starmap(verify_pair, [(i, lb, nc) for i, lb in zip(im_files, label_files)])
            cache_path = cache.save_cache(cache_path, records, key, self.prefix) or cache_path
        for r in records:
            if r.msg:
                LOGGER.warning(f"{self.prefix}WARNING: {r.msg}")
        counts = {s: sum(r.status == s for r in records) for s in ("found", "missing", "empty", "corrupt")}
        info(f"{self.prefix}Scanning '{cache_path}'... {counts['found']} images, "
             f"{counts['missing'] + counts['empty']} backgrounds, {counts['corrupt']} corrupt "
             f"({counts['found']} found, {counts['missing']} missing, {counts['empty']} empty, "
             f"{counts['corrupt']} corrupt)")
        self.counts = counts
        return records

    def _keep(self, records, single_cls):
        good = [r for r in records if r.status != "corrupt"]
        self.im_files = [r.im_file for r in good]
        self.labels = [r.labels.copy() for r in good]
        self.segments = [list(r.segments) for r in good]
        self.shapes = np.array([r.shape for r in good], dtype=np.float64).reshape(-1, 2)
        if single_cls:
            for lb in self.labels:
                lb[:, 0] = 0

    def _set_rect(self, batch_size, pad):
        """Sort by aspect ratio h/w and give each batch the smallest stride-multiple shape (spec 4.7)."""
        ar = self.shapes[:, 1] / self.shapes[:, 0]
        order = ar.argsort()
        self.im_files = [self.im_files[i] for i in order]
        self.labels = [self.labels[i] for i in order]
        self.segments = [self.segments[i] for i in order]
        self.shapes, ar = self.shapes[order], ar[order]
        bi = np.floor(np.arange(len(ar)) / batch_size).astype(int)
        shapes = []
        for b in range(bi[-1] + 1):
            ari = ar[bi == b]
            mini, maxi = ari.min(), ari.max()
            shapes.append([maxi, 1] if maxi < 1 else [1, 1 / mini] if mini > 1 else [1, 1])
        self.batch = bi
        self.batch_shapes = np.ceil(np.array(shapes) * self.img_size / self.stride + pad).astype(int) * self.stride

    # ---- images -------------------------------------------------------------------------------------
    def cache_images(self, mode):
        """'ram' keeps resized images in memory; 'disk' (or True -> 'ram') saves decoded .npy files in the
        user cache folder (never beside the images)."""
        mode = "ram" if mode is True else mode
        if mode == "disk":
            folder = _npy_folder(self.im_files)
            folder.mkdir(parents=True, exist_ok=True)
            self.npy_files = [str(folder / f"{i}_{Path(f).stem}.npy") for i, f in enumerate(self.im_files)]
            with ThreadPool(NUM_THREADS) as pool:
                pool.map(self._save_npy, range(len(self.im_files)))
            info(f"{self.prefix}Caching images to {folder} done")
        elif mode == "ram":
            with ThreadPool(NUM_THREADS) as pool:
                self.ims = pool.map(lambda i: self.load_image(i)[0], range(len(self.im_files)))
            gb = sum(im.nbytes for im in self.ims) / 1e9
            info(f"{self.prefix}Caching images ({gb:.2f}GB ram) done")
        else:
            raise ValueError(f"cache must be 'ram' or 'disk', got {mode!r}")

    def _save_npy(self, i):
        f = Path(self.npy_files[i])
        if not f.exists():
            tmp = f.with_name(f.name + ".tmp.npy")
            np.save(tmp, read_image(self.im_files[i]))
            os.replace(tmp, f)

    def load_image(self, i):
        """(image resized so its long side is img_size, (h0, w0), (h, w)).

        Sizes round up (ceil(w0 * r)): upstream v7.0 does, and its coco8 reference metrics depend on it (the
        spec's "int" is wrong here; see docs/evaluation.md)."""
        if self.ims[i] is not None:
            im = self.ims[i]
            return im, tuple(int(v) for v in self.shapes[i][::-1]), im.shape[:2]
        im = np.load(self.npy_files[i]) if self.npy_files[i] else read_image(self.im_files[i])
        h0, w0 = im.shape[:2]
        r = self.img_size / max(h0, w0)
        if r != 1:
            interp = cv2.INTER_LINEAR if (self.augment or r > 1) else cv2.INTER_AREA
            size = (math.ceil(w0 * r), math.ceil(h0 * r))
            im = cv2.resize(im, size, interpolation=interp)
        return im, (h0, w0), im.shape[:2]

    # ---- items --------------------------------------------------------------------------------------
    def __len__(self):
        return len(self.im_files)

    def __getitem__(self, index):
        index = int(self.indices[index])
        hyp, rng = self.hyp, self.rng
        if self.mosaic and rng.random() < hyp["mosaic"]:
            img, labels = self.load_mosaic(index)
            shapes = None
            if rng.random() < hyp["mixup"]:
                img, labels = augment.mixup(img, labels, *self.load_mosaic(int(rng.integers(len(self)))), rng)
        else:
            img, labels, shapes = self._load_letterboxed(index)
        if len(labels):
            labels[:, 1:5] = boxes.xyxy2xywhn(labels[:, 1:5], w=img.shape[1], h=img.shape[0], clip=True, eps=1e-3)
        if self.augment:
            augment.augment_hsv(img, hyp["hsv_h"], hyp["hsv_s"], hyp["hsv_v"], rng)
            if rng.random() < hyp["flipud"]:
                img = np.flipud(img)
                labels[:, 2] = 1 - labels[:, 2]
            if rng.random() < hyp["fliplr"]:
                img = np.fliplr(img)
                labels[:, 1] = 1 - labels[:, 1]
        labels_out = torch.zeros((len(labels), 6))
        if len(labels):
            labels_out[:, 1:] = torch.from_numpy(np.asarray(labels, dtype=np.float32))
        img = np.ascontiguousarray(img.transpose((2, 0, 1))[::-1])  # HWC BGR -> CHW RGB
        return torch.from_numpy(img), labels_out, self.im_files[index], shapes

    def _load_letterboxed(self, index):
        img, (h0, w0), (h, w) = self.load_image(index)
        shape = self.batch_shapes[self.batch[index]] if self.rect else self.img_size
        img, ratio, pad = letterbox(img, shape, auto=False, scaleup=self.augment)
        shapes = (h0, w0), ((h / h0, w / w0), pad)
        labels = self.labels[index].copy()
        if len(labels):
            labels[:, 1:] = boxes.xywhn2xyxy(labels[:, 1:], ratio[0] * w, ratio[1] * h, padw=pad[0], padh=pad[1])
        if self.augment:
            hyp = self.hyp
            img, labels = augment.random_perspective(
                img, labels, degrees=hyp["degrees"], translate=hyp["translate"], scale=hyp["scale"],
                shear=hyp["shear"], perspective=hyp["perspective"], rng=self.rng)
        return img, labels, shapes

    def load_mosaic(self, index):
        """4-image mosaic (spec 4.4) -> (s x s image, labels (n,5) cls + pixel xyxy)."""
        s, rng, hyp = self.img_size, self.rng, self.hyp
        centre = tuple(int(rng.uniform(s / 2, 3 * s / 2)) for _ in range(2))
        indices = [index] + [int(i) for i in rng.choice(self.indices, 3)]
        rng.shuffle(indices)
        tiles = [(self.load_image(i)[0], self.labels[i], self.segments[i]) for i in indices]
        img, labels, segments = augment.build_mosaic(tiles, s, centre)
        img, labels, segments = augment.copy_paste(img, labels, segments, p=hyp["copy_paste"], rng=rng)
        return augment.random_perspective(
            img, labels, segments, degrees=hyp["degrees"], translate=hyp["translate"], scale=hyp["scale"],
            shear=hyp["shear"], perspective=hyp["perspective"], border=(-(s // 2), -(s // 2)), rng=rng)

    @staticmethod
    def collate_fn(batch):
        """Stack to (B,3,H,W) uint8 and (N,6) targets whose column 0 is the image index in the batch."""
        ims, labels, paths, shapes = zip(*batch)
        for i, lb in enumerate(labels):
            lb[:, 0] = i
        # numpy stacks uint8 images in ~0.2 ms; torch.stack took ~250 ms with 2 intra-op threads on a busy 2-core box
        imgs = torch.from_numpy(np.stack([im.numpy() for im in ims], 0))
        return imgs, torch.cat(labels, 0), paths, shapes


def _cache_path(path, label_files, labels_dir) -> Path:
    src = Path(path[0] if isinstance(path, (list, tuple)) else path)
    if src.is_file():  # a txt list: <list stem>.cache.npz beside it
        return src.with_name(src.stem + ".cache.npz")
    if labels_dir is not None:
        return Path(labels_dir).parent / f"{Path(labels_dir).name}-{src.name}.cache.npz"
    parent = Path(label_files[0]).parent
    return parent.with_name(parent.name + ".cache.npz")


def _npy_folder(im_files) -> Path:
    key = hashlib.sha256("\n".join(im_files).encode()).hexdigest()[:16]
    return cache.cache_root() / "images" / key
