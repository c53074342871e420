"""Pairwise overlaps in pure torch (the oracle of dualhead::box_iou), from dualhead.iou's
element-wise IoU family (ultralytics' bbox_iou, op for op)."""

from __future__ import annotations

import torch

from dualhead.checks import _tensor
from dualhead.conventions import IOU_KINDS
from dualhead.iou import iou_aligned


def box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor, kind: str = "ciou") -> torch.Tensor:
    """Pairwise overlaps: boxes1 (N, 4), boxes2 (M, 4) xyxy -> (N, M) fp32."""
    if kind not in IOU_KINDS:
        raise ValueError(f"kind must be one of {sorted(IOU_KINDS)}, got {kind!r}")
    for name, b in (("boxes1", boxes1), ("boxes2", boxes2)):
        _tensor(name, b)
        if b.dim() != 2 or b.shape[1] != 4:
            raise ValueError(f"{name} must be (N, 4), got {tuple(b.shape)}")
    return iou_aligned(boxes1.float()[:, None, :], boxes2.float()[None, :, :], kind)
