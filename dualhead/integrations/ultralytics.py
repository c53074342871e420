"""Make ultralytics' detection losses assign with dualhead's fused kernels.

    from dualhead.integrations import ultralytics as dh_ultralytics
    dh_ultralytics.patch()          # every loss created afterwards uses dualhead
    ...
    dh_ultralytics.unpatch()        # ultralytics' own assigner again
    with dh_ultralytics.patched():  # or scoped
        ...

What changes: the `TaskAlignedAssigner` name that ultralytics.utils.loss resolves when a loss
(v8DetectionLoss, and E2ELoss's two heads for YOLOv10 / YOLO26) builds its assigner. The
constructor arguments (topk, topk2, alpha, beta, stride, num_classes) pass through unchanged.
Losses built before patch() keep the assigner they have. Nothing else in ultralytics changes;
segmentation / pose / OBB losses build their own assigner subclasses and are unaffected.
"""

from __future__ import annotations

import contextlib

from dualhead.assigners import TaskAlignedAssigner as _DualheadTAL

_original = None


class UltralyticsTaskAlignedAssigner(_DualheadTAL):
    """dualhead's assigner with ultralytics' forward keyword tail (`**extra` pass-through
    tensors, which detection losses never send)."""

    def forward(self, pd_scores, pd_bboxes, anc_points, gt_labels, gt_bboxes, mask_gt, **extra):
        if extra:
            raise ValueError(f"dualhead's assigner takes no extra tensors, got {sorted(extra)}")
        return super().forward(pd_scores, pd_bboxes, anc_points, gt_labels, gt_bboxes, mask_gt)


def _loss_module():
    import ultralytics.utils.loss as loss

    return loss


def patch() -> None:
    """Route ultralytics' detection losses created from now on through dualhead."""
    global _original
    loss = _loss_module()
    if _original is None:
        _original = loss.TaskAlignedAssigner
    loss.TaskAlignedAssigner = UltralyticsTaskAlignedAssigner


def unpatch() -> None:
    """Restore ultralytics' own TaskAlignedAssigner for losses created from now on."""
    global _original
    if _original is not None:
        _loss_module().TaskAlignedAssigner = _original
        _original = None


def loss_heads(criterion) -> list:
    """The per-head detection losses of an ultralytics criterion: E2ELoss's one2many and
    one2one, or the criterion itself (v8DetectionLoss). Each has an .assigner."""
    return [criterion.one2many, criterion.one2one] if hasattr(criterion, "one2many") else [criterion]


def is_patched() -> bool:
    return _original is not None


@contextlib.contextmanager
def patched():
    """patch() for the duration of a with-block (restores the previous state after)."""
    was = is_patched()
    patch()
    try:
        yield
    finally:
        if not was:
            unpatch()
