"""Anchor points laid out as ultralytics lays them out (its make_anchors): the centres of every
cell of every pyramid level, level by level, row-major. The assignment ops take them in pixels;
a detector keeps them in grid units with a stride per anchor."""

from __future__ import annotations

import torch

STRIDES = (8, 16, 32)


def make_anchors(shapes, strides, offset: float = 0.5, device="cpu"):
    """Anchor centres in grid units (N, 2) and their strides (N, 1) for levels of (h, w) cells."""
    pts, st = [], []
    for (h, w), s in zip(shapes, strides):
        sy, sx = torch.meshgrid(
            torch.arange(h, device=device, dtype=torch.float32) + offset,
            torch.arange(w, device=device, dtype=torch.float32) + offset,
            indexing="ij",
        )
        pts.append(torch.stack((sx, sy), -1).view(-1, 2))
        st.append(torch.full((h * w, 1), float(s), dtype=torch.float32, device=device))
    return torch.cat(pts), torch.cat(st)


def anchor_points(imgsz: int, strides=STRIDES, offset: float = 0.5, device="cpu") -> torch.Tensor:
    """Anchor centres in pixels (N, 2) of a square imgsz input: make_anchors(...) * strides, as
    ultralytics' loss hands them to its assigner."""
    pts, st = make_anchors([(imgsz // s, imgsz // s) for s in strides], strides, offset, device)
    return pts * st
