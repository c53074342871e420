"""Fake (meta) kernels for torch.ops.dualhead.*: shapes and dtypes only, so torch.compile and
FakeTensor tracing go through the ops. Same shape conditions as the C++ checks."""

from __future__ import annotations

import torch


def _check_boxes(t, name):
    torch._check(t.dim() == 2 and t.shape[1] == 4, lambda: f"{name} must be (N, 4), got {tuple(t.shape)}")


def register() -> None:
    @torch.library.register_fake("dualhead::box_iou")
    def _box_iou(boxes1, boxes2, kind):
        _check_boxes(boxes1, "boxes1")
        _check_boxes(boxes2, "boxes2")
        torch._check(0 <= kind <= 3, lambda: f"kind must be 0..3, got {kind}")
        return boxes1.new_empty((boxes1.shape[0], boxes2.shape[0]), dtype=torch.float32)
