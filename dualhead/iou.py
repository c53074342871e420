"""The IoU family exactly as ultralytics' bbox_iou(xywh=False, eps=1e-7) computes it, in torch
(differentiable): the loss's box term, and the reference assigner's overlaps.

Same operations in the same order as ultralytics/utils/metrics.py (8.4.190), so it agrees with
ultralytics bit for bit on fp32 inputs.
"""

from __future__ import annotations

import math

import torch


def iou_aligned(box1: torch.Tensor, box2: torch.Tensor, kind: str = "ciou", eps: float = 1e-7) -> torch.Tensor:
    """Overlap of box1[..., i] with box2[..., i] (broadcasting), xyxy, -> shape (...)."""
    b1_x1, b1_y1, b1_x2, b1_y2 = box1.unbind(-1)
    b2_x1, b2_y1, b2_x2, b2_y2 = box2.unbind(-1)
    w1, h1 = b1_x2 - b1_x1, b1_y2 - b1_y1 + eps
    w2, h2 = b2_x2 - b2_x1, b2_y2 - b2_y1 + eps
    inter = (b1_x2.minimum(b2_x2) - b1_x1.maximum(b2_x1)).clamp_(0) * (
        b1_y2.minimum(b2_y2) - b1_y1.maximum(b2_y1)
    ).clamp_(0)
    union = w1 * h1 + w2 * h2 - inter + eps
    iou = inter / union
    if kind == "iou":
        return iou
    cw = b1_x2.maximum(b2_x2) - b1_x1.minimum(b2_x1)
    ch = b1_y2.maximum(b2_y2) - b1_y1.minimum(b2_y1)
    if kind == "giou":
        c_area = cw * ch + eps
        return iou - (c_area - union) / c_area
    c2 = cw.pow(2) + ch.pow(2) + eps
    rho2 = ((b2_x1 + b2_x2 - b1_x1 - b1_x2).pow(2) + (b2_y1 + b2_y2 - b1_y1 - b1_y2).pow(2)) / 4
    if kind == "diou":
        return iou - rho2 / c2
    v = (4 / math.pi**2) * ((w2 / h2).atan() - (w1 / h1).atan()).pow(2)
    with torch.no_grad():
        alpha = v / (1 - iou + v + eps)  # a constant for backprop, as in ultralytics
    return iou - (rho2 / c2 + v * alpha)
