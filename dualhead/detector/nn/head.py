"""The dual detection head (YOLOv10): an o2m and an o2o branch of the same architecture with
separate weights, DFL box regression, NMS-free inference from the o2o branch.

Layout follows ultralytics' v10Detect (reference/ultralytics_tal.md §5): per level a box branch
Conv3-Conv3-1x1 (4 * reg_max outputs) and the "light" class branch (depthwise 3x3, 1x1, depthwise
3x3, 1x1, 1x1 to nc).
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from dualhead.anchors import make_anchors
from dualhead.detector.nn.blocks import Conv

BRANCHES = ("o2m", "o2o")


class Branch(nn.Module):
    """One head branch over all pyramid levels -> (dist (B, N, 4*reg_max), logits (B, N, nc))."""

    def __init__(self, nc: int, ch, reg_max: int = 16):
        super().__init__()
        c2 = max(16, ch[0] // 4, 4 * reg_max)
        c3 = max(ch[0], min(nc, 100))
        self.box = nn.ModuleList(
            nn.Sequential(Conv(c, c2, 3), Conv(c2, c2, 3), nn.Conv2d(c2, 4 * reg_max, 1)) for c in ch
        )
        self.cls = nn.ModuleList(
            nn.Sequential(
                nn.Sequential(Conv(c, c, 3, g=c), Conv(c, c3, 1)),
                nn.Sequential(Conv(c3, c3, 3, g=c3), Conv(c3, c3, 1)),
                nn.Conv2d(c3, nc, 1),
            )
            for c in ch
        )

    def forward(self, feats):
        dist = torch.cat([m(x).flatten(2) for m, x in zip(self.box, feats)], 2).transpose(1, 2)
        logits = torch.cat([m(x).flatten(2) for m, x in zip(self.cls, feats)], 2).transpose(1, 2)
        return dist, logits

    def init_bias(self, nc: int, strides, imgsz: int):
        """ultralytics' init: box bias 2.0 (about 2 grid cells each side), class bias
        log(5 / nc / (imgsz / s)^2) -- a prior of ~5 objects per image spread over the level."""
        for box, cls, s in zip(self.box, self.cls, strides):
            box[-1].bias.data.fill_(2.0)
            cls[-1].bias.data.fill_(math.log(5 / nc / (imgsz / s) ** 2))


def decode_dist(dist: torch.Tensor, anchors: torch.Tensor, reg_max: int = 16) -> torch.Tensor:
    """DFL distances (B, N, 4*reg_max) -> xyxy boxes (B, N, 4) in grid units: softmax over the
    bins, expectation, then anchor -/+ (l, t), (r, b) (ultralytics bbox_decode + dist2bbox)."""
    B, N, _ = dist.shape
    proj = torch.arange(reg_max, device=dist.device, dtype=torch.float32)
    ltrb = dist.view(B, N, 4, reg_max).float().softmax(3).matmul(proj)
    return torch.cat((anchors - ltrb[..., :2], anchors + ltrb[..., 2:]), -1)


class DualHead(nn.Module):
    """YOLOv10 dual head on a three-level feature pyramid.

    branches: ("o2m", "o2o") for dual training; ("o2m",) or ("o2o",) for single-head baselines.
    In dual training the o2o branch sees detached features, so the backbone is trained by the
    o2m loss alone (ultralytics v10Detect; `detach_o2o = False` lets the o2o loss train it too); a
    lone o2o branch is not detached.
    Inference uses the o2o branch when there is one (NMS-free), else o2m (needs NMS).
    """

    def __init__(self, nc: int, ch, strides=(8, 16, 32), reg_max: int = 16, branches=BRANCHES, imgsz: int = 640):
        super().__init__()
        if not branches or any(b not in BRANCHES for b in branches):
            raise ValueError(f"branches must be a non-empty subset of {BRANCHES}, got {branches!r}")
        if len(ch) != len(strides):
            raise ValueError(f"ch and strides must have one entry per level, got {ch!r} and {strides!r}")
        self.nc, self.reg_max, self.strides = nc, reg_max, tuple(strides)
        self.branches = tuple(b for b in BRANCHES if b in branches)
        first = Branch(nc, ch, reg_max)
        first.init_bias(nc, strides, imgsz)
        # the second branch is a deep copy: same architecture and initial weights, separate parameters
        self.heads = nn.ModuleDict(
            {b: (first if i == 0 else copy.deepcopy(first)) for i, b in enumerate(self.branches)}
        )
        self._anchors = {}
        self.detach_o2o = True  # a training choice, not architecture (TrainConfig.o2o_detach)

    @property
    def end2end(self) -> bool:
        return "o2o" in self.branches

    def anchors(self, feats):
        """(anchor centres (N, 2) grid units, strides (N, 1)) for these feature shapes, cached."""
        key = (tuple(tuple(x.shape[2:]) for x in feats), feats[0].device)
        if key not in self._anchors:
            self._anchors = {key: make_anchors(key[0], self.strides, device=feats[0].device)}
        return self._anchors[key]

    def forward(self, feats, branches=None):
        """-> {branch: (dist (B, N, 4*reg_max), logits (B, N, nc))} for the requested branches
        (default: all in training, the inference branch in eval)."""
        if branches is None:
            branches = self.branches if self.training else (self.infer_branch,)
        out = {}
        for b in branches:
            detach = b == "o2o" and "o2m" in self.branches and self.training and self.detach_o2o
            out[b] = self.heads[b]([x.detach() for x in feats] if detach else feats)
        return out

    @property
    def infer_branch(self) -> str:
        return "o2o" if self.end2end else "o2m"

    def decode(self, out, feats):
        """One branch's raw output -> (boxes xyxy pixels (B, N, 4), class probabilities (B, N, nc))."""
        dist, logits = out
        anc, st = self.anchors(feats)
        return decode_dist(dist, anc, self.reg_max) * st, logits.float().sigmoid()
