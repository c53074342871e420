"""A small YOLO-style detector (C2f backbone, PAN neck, DualHead) so the package trains out of the box.

Widths follow YOLOv8's (64, 128, 256, 512, 1024) scaled by `width`; `width=0.25, depth=1` is
about YOLOv8n. The default here is smaller still, sized to train in minutes on two CPU cores.
"""

from __future__ import annotations

import torch
from torch import nn

from dualhead.detector.nn.blocks import SPPF, C2f, Conv
from dualhead.detector.nn.head import BRANCHES, DualHead

STRIDES = (8, 16, 32)


class Backbone(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.stem = nn.Sequential(Conv(3, c[0], 3, 2), Conv(c[0], c[1], 3, 2), C2f(c[1], c[1]))  # /4
        self.p3 = nn.Sequential(Conv(c[1], c[2], 3, 2), C2f(c[2], c[2]))  # /8
        self.p4 = nn.Sequential(Conv(c[2], c[3], 3, 2), C2f(c[3], c[3]))  # /16
        self.p5 = nn.Sequential(Conv(c[3], c[4], 3, 2), C2f(c[4], c[4]), SPPF(c[4], c[4]))  # /32

    def forward(self, x):
        p3 = self.p3(self.stem(x))
        p4 = self.p4(p3)
        return p3, p4, self.p5(p4)


class PAN(nn.Module):
    """Top-down then bottom-up path aggregation (YOLOv8 neck)."""

    def __init__(self, c):
        super().__init__()
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.td4 = C2f(c[4] + c[3], c[3], shortcut=False)
        self.td3 = C2f(c[3] + c[2], c[2], shortcut=False)
        self.down3 = Conv(c[2], c[2], 3, 2)
        self.bu4 = C2f(c[2] + c[3], c[3], shortcut=False)
        self.down4 = Conv(c[3], c[3], 3, 2)
        self.bu5 = C2f(c[3] + c[4], c[4], shortcut=False)

    def forward(self, feats):
        p3, p4, p5 = feats
        t4 = self.td4(torch.cat((self.up(p5), p4), 1))
        n3 = self.td3(torch.cat((self.up(t4), p3), 1))
        n4 = self.bu4(torch.cat((self.down3(n3), t4), 1))
        n5 = self.bu5(torch.cat((self.down4(n4), p5), 1))
        return n3, n4, n5


class Detector(nn.Module):
    """Backbone + neck + DualHead. forward(images (B, 3, H, W) in [0, 1], H and W multiples of 32):
    training -> {branch: (dist, logits)} plus the features; eval -> (boxes xyxy px, probabilities)
    of the inference branch (o2o when present: NMS-free)."""

    def __init__(self, nc: int, width: float = 0.125, branches=BRANCHES, imgsz: int = 640, reg_max: int = 16):
        super().__init__()
        if not (isinstance(nc, int) and nc >= 1):
            raise ValueError(f"nc must be an int >= 1, got {nc!r}")
        if not (width > 0):
            raise ValueError(f"width must be > 0, got {width!r}")
        c = [max(8, int(round(w * width / 8)) * 8) for w in (64, 128, 256, 512, 1024)]
        self.config = dict(nc=nc, width=width, branches=tuple(branches), imgsz=imgsz, reg_max=reg_max)
        self.backbone, self.neck = Backbone(c), PAN(c)
        self.head = DualHead(nc, (c[2], c[3], c[4]), STRIDES, reg_max, branches, imgsz)

    def features(self, x):
        return self.neck(self.backbone(x))

    def forward(self, x, branches=None):
        if x.shape[-1] % 32 or x.shape[-2] % 32:
            raise ValueError(f"image height and width must be multiples of 32, got {tuple(x.shape[-2:])}")
        feats = self.features(x)
        out = self.head(feats, branches)
        if self.training:
            return out, feats
        return {b: self.head.decode(o, feats) for b, o in out.items()}
