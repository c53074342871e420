"""Batching: a dataset's samples as the network's inputs (DetectionSet: augmentation and uint8
CHW tensors; EpochIndices: the epoch travels with each index; collate: padded ground-truth rows;
as_float: a batch as [0, 1] floats on the device)."""

from __future__ import annotations

import numpy as np
import torch

from dualhead.detector.data.transforms import Augment


class DetectionSet(torch.utils.data.Dataset):
    """Wraps a dataset of (image uint8 HWC, boxes xyxy px, labels) with optional augmentation;
    yields (image uint8 (3, H, W), boxes (n, 4) fp32, labels (n,) int64, index). Images stay uint8
    through the loader (a quarter of the bytes to collate, pin and copy); as_float() turns a
    batch into the network's [0, 1] floats on its device.
    Augmentation randomness is drawn from (seed, epoch, index): reproducible, and different per
    epoch (the epoch comes with the index from EpochIndices; a plain index is epoch 0)."""

    def __init__(self, base, augment: Augment | None = None, seed: int = 0):
        self.base, self.augment, self.seed = base, augment, seed
        self.names, self.nc = base.names, base.nc

    def __len__(self):
        return len(self.base)

    def __getitem__(self, key):
        epoch, i = key if isinstance(key, tuple) else (0, key)  # (epoch, index) from EpochIndices
        img, boxes, labels = self.base[i]
        if self.augment is not None:
            img, boxes, labels = self.augment(img, boxes, labels, np.random.default_rng((self.seed, epoch, i)))
        keep = (boxes[:, 2] - boxes[:, 0] >= 1) & (boxes[:, 3] - boxes[:, 1] >= 1)
        # CHW uint8, one copy (also of a read-only cached render: torch wants memory it may write)
        t = torch.from_numpy(
            np.ascontiguousarray(img.transpose(2, 0, 1)) if img.flags.writeable else img.transpose(2, 0, 1).copy()
        )
        return t, torch.from_numpy(boxes[keep]), torch.from_numpy(labels[keep]), i


class EpochIndices(torch.utils.data.Sampler):
    """Wraps a sampler to yield (epoch, index): the epoch travels with every index to the data
    workers, whose copy of the dataset is made once with persistent workers (state set on it in
    the main process never reaches them) -- so augmentation changes every epoch and a resumed run
    draws what an uninterrupted one does."""

    def __init__(self, sampler):
        self.sampler, self.epoch = sampler, 0

    def set_epoch(self, epoch: int):
        self.epoch = epoch
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def __iter__(self):
        epoch = self.epoch
        return ((epoch, i) for i in self.sampler)

    def __len__(self):
        return len(self.sampler)


def collate(samples):
    """-> dict(images (B, 3, H, W), gt_bboxes (B, M, 4), gt_labels (B, M) int64, mask_gt (B, M)
    bool, index (B,)) with M the largest object count in the batch (rows padded with zeros)."""
    imgs, boxes, labels, idx = zip(*samples)
    B, M = len(imgs), max((len(b) for b in boxes), default=0)
    gb = torch.zeros(B, M, 4)
    gl = torch.zeros(B, M, dtype=torch.long)
    mask = torch.zeros(B, M, dtype=torch.bool)
    for i, (b, lab) in enumerate(zip(boxes, labels)):
        gb[i, : len(b)], gl[i, : len(lab)], mask[i, : len(b)] = b, lab, True
    return dict(images=torch.stack(imgs), gt_bboxes=gb, gt_labels=gl, mask_gt=mask, index=torch.tensor(idx))


def stack_images(images, device=None) -> torch.Tensor:
    """uint8 HWC images of one size (numpy) as the network's float (B, 3, H, W) batch on device."""
    return as_float(torch.stack([torch.from_numpy(im.copy()).permute(2, 0, 1) for im in images]), device)


def as_float(images: torch.Tensor, device=None, memory_format=torch.contiguous_format) -> torch.Tensor:
    """A batch of uint8 (B, 3, H, W) images as float in [0, 1] on device (copied as uint8), laid
    out in memory_format (the permute done on the uint8 bytes, a quarter of the float ones)."""
    return images.to(device, non_blocking=True).contiguous(memory_format=memory_format).float().div_(255)
