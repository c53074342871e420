"""Functional API over torch.ops.dualhead.* (SPEC §2), with the pure-torch reference as the
fallback when the extension is not built (one warning per process).

Shapes: B images, N anchors, C classes, M ground-truth slots. Boxes are xyxy in pixels.
"""

from __future__ import annotations

import torch

from dualhead import _ext, reference
from dualhead.assignment import Assignment, DualAssignment
from dualhead.checks import IOU_KINDS

__all__ = ["box_iou", "assign", "dual_assign", "to_dense"]


def box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor, kind: str = "ciou") -> torch.Tensor:
    """Pairwise overlaps (N, 4) x (M, 4) -> (N, M) fp32; kind in iou, giou, diou, ciou
    (ultralytics bbox_iou, eps 1e-7)."""
    if kind not in IOU_KINDS:
        raise ValueError(f"kind must be one of {sorted(IOU_KINDS)}, got {kind!r}")
    if _ext.has_kernel("box_iou", _dispatch_key(boxes1)):
        return torch.ops.dualhead.box_iou(boxes1, boxes2, IOU_KINDS[kind])
    _ext.warn_fallback()
    return reference.box_iou(boxes1, boxes2, kind)


def assign(pd_scores, pd_bboxes, anc_points, gt_labels, gt_bboxes, mask_gt, *, topk=10, topk2=None, alpha=0.5,
           beta=6.0, min_side=16.0, conflict="all", iou_type="ciou", eps=1e-9) -> Assignment:
    """Single-head task-aligned assignment, compact output (see dualhead.reference.assign)."""
    return reference.assign(pd_scores, pd_bboxes, anc_points, gt_labels, gt_bboxes, mask_gt, topk=topk,
                            topk2=topk2, alpha=alpha, beta=beta, min_side=min_side, conflict=conflict,
                            iou_type=iou_type, eps=eps)


def dual_assign(o2m_scores, o2m_bboxes, o2o_scores, o2o_bboxes, anc_points, gt_labels, gt_bboxes, mask_gt, *,
                o2m_topk=10, o2o_topk=1, o2o_topk2=None, alpha=0.5, beta=6.0, r=1.0, min_side=16.0,
                conflict="all", iou_type="ciou", eps=1e-9) -> DualAssignment:
    """Both heads in one call, sharing the candidate search (see dualhead.reference.dual_assign)."""
    return reference.dual_assign(o2m_scores, o2m_bboxes, o2o_scores, o2o_bboxes, anc_points, gt_labels, gt_bboxes,
                                 mask_gt, o2m_topk=o2m_topk, o2o_topk=o2o_topk, o2o_topk2=o2o_topk2, alpha=alpha,
                                 beta=beta, r=r, min_side=min_side, conflict=conflict, iou_type=iou_type, eps=eps)


def to_dense(a: Assignment, num_classes: int):
    """Compact Assignment -> ultralytics 5-tuple with (B, N, C) target scores."""
    return reference.to_dense(a, num_classes)


def _dispatch_key(t: torch.Tensor) -> str:
    return "CUDA" if t.is_cuda else "CPU"
