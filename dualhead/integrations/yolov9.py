"""Drop-in for WongKinYiu/yolov9's task-aligned assigner (utils/tal/assigner.py), computed by
dualhead's kernels with YOLOv9's rules (`dualhead.Convention.yolov9()`: conflicts decided by the
overlaps of every (object, anchor) pair, no small-box floor).

In yolov9's utils/loss_tal.py (and loss_tal_dual.py, loss_tal_triple.py), change one import:

    from dualhead.integrations.yolov9 import TaskAlignedAssigner

Same constructor, call and return value: (target_labels (B,N), target_bboxes (B,N,4),
target_scores (B,N,C), fg_mask (B,N) bool).
"""

from __future__ import annotations

import torch

from dualhead.assigners import TaskAlignedAssigner as _TaskAlignedAssigner
from dualhead.conventions import Convention


class TaskAlignedAssigner(_TaskAlignedAssigner):
    def __init__(self, topk=13, num_classes=80, alpha=1.0, beta=6.0, eps=1e-9):
        super().__init__(topk, num_classes, alpha, beta, eps=eps, convention=Convention.yolov9(eps=eps))
        self.bg_idx = num_classes

    @torch.no_grad()
    def forward(self, pd_scores, pd_bboxes, anc_points, gt_labels, gt_bboxes, mask_gt):
        """pd_scores (B,N,C) probabilities, pd_bboxes (B,N,4) xyxy, anc_points (N,2), gt_labels
        (B,M,1), gt_bboxes (B,M,4), mask_gt (B,M,1) -> the 4-tuple above (no target_gt_idx)."""
        return super().forward(pd_scores, pd_bboxes, anc_points, gt_labels, gt_bboxes, mask_gt)[:4]
