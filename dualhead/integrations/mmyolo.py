"""Drop-in for mmyolo's BatchTaskAlignedAssigner (the YOLOv6 and YOLOv8 configs), computed by
dualhead's kernels with mmyolo's rules (`dualhead.Convention.mmyolo(use_ciou, eps)`: conflicts
decided by the overlaps of every (object, anchor) pair, no small-box floor; IoU, or CIoU with
use_ciou=True).

Same constructor, call (pred_bboxes, pred_scores, priors, gt_labels, gt_bboxes, pad_bbox_flag)
and result dict (assigned_labels, assigned_bboxes, assigned_scores, fg_mask_pre_prior). When mmyolo
is importable, `register()` (run on import) adds it to mmyolo's TASK_UTILS registry as
"DualheadBatchTaskAlignedAssigner", so a config changes one line:

    assigner=dict(type="DualheadBatchTaskAlignedAssigner", num_classes=80, use_ciou=True, topk=10, alpha=0.5, beta=6.0)
"""

from __future__ import annotations

import torch

from dualhead.assigners import TaskAlignedAssigner
from dualhead.conventions import Convention
from dualhead.integrations._registry import register_task_util


class BatchTaskAlignedAssigner(TaskAlignedAssigner):
    def __init__(
        self,
        num_classes: int,
        topk: int = 13,
        alpha: float = 1.0,
        beta: float = 6.0,
        eps: float = 1e-7,
        use_ciou: bool = False,
    ):
        super().__init__(topk, num_classes, alpha, beta, eps=eps, convention=Convention.mmyolo(use_ciou, eps))
        self.use_ciou = use_ciou

    @torch.no_grad()
    def forward(self, pred_bboxes, pred_scores, priors, gt_labels, gt_bboxes, pad_bbox_flag) -> dict:
        """pred_bboxes (B,N,4) xyxy, pred_scores (B,N,C), priors (N,4) (x, y, stride_w, stride_h),
        gt_labels (B,M,1), gt_bboxes (B,M,4), pad_bbox_flag (B,M,1) -> dict of targets."""
        if not (isinstance(priors, torch.Tensor) and priors.dim() == 2 and priors.shape[1] >= 2):
            shape = tuple(priors.shape) if isinstance(priors, torch.Tensor) else type(priors).__name__
            raise ValueError(f"priors must be (num_priors, 4), got {shape}")
        labels, bboxes, scores, fg, _ = super().forward(
            pred_scores, pred_bboxes, priors[:, :2], gt_labels, gt_bboxes, pad_bbox_flag
        )
        return {
            "assigned_labels": labels,
            "assigned_bboxes": bboxes,
            "assigned_scores": scores,
            "fg_mask_pre_prior": fg,
        }


def register() -> bool:
    """Adds the class to mmyolo's TASK_UTILS registry (as DualheadBatchTaskAlignedAssigner) when
    mmyolo is importable; returns whether it did."""
    return register_task_util("mmyolo.registry", "DualheadBatchTaskAlignedAssigner", BatchTaskAlignedAssigner)


register()
