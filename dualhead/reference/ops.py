"""The pure-torch ops: dualhead.ops' functions with the same signatures, composed from this
package's candidate search, per-head selection and statistics."""

from __future__ import annotations

import torch

from dualhead.assignment import Assignment, DualAssignment, dense_torch
from dualhead.checks import check_dual_inputs, check_inputs
from dualhead.conventions import Convention, resolve
from dualhead.reference.assign import candidate_pairs, head_assign
from dualhead.reference.dual import consistency_stats
from dualhead.settings import O2M, O2O, HeadSettings, heads_or_options, single_settings


@torch.no_grad()
def assign(
    pd_scores,
    pd_bboxes,
    anc_points,
    gt_labels,
    gt_bboxes,
    mask_gt,
    *,
    topk=O2M.topk,
    topk2=None,
    alpha=O2M.alpha,
    beta=O2M.beta,
    min_side=16.0,
    conflict="all",
    iou_type="ciou",
    eps=1e-9,
    convention: Convention | None = None,
    head: HeadSettings | None = None,
) -> Assignment:
    """Single-head task-aligned assignment (contract §1), compact output. Shapes as in contract §1:
    pd_scores (B, N, C), pd_bboxes (B, N, 4), anc_points (N, 2), gt_labels (B, M[, 1]),
    gt_bboxes (B, M, 4), mask_gt (B, M[, 1]); boxes xyxy in pixels. convention: another
    codebase's rules (dualhead.Convention) instead of min_side / conflict / iou_type / eps.
    head: the HeadSettings instead of topk / topk2 / alpha / beta."""
    conv = resolve(convention, min_side=min_side, conflict=conflict, iou_type=iou_type, eps=eps)
    head = single_settings(head, topk, topk2, alpha, beta)
    labels, mask = check_inputs(pd_scores, pd_bboxes, anc_points, gt_labels, gt_bboxes, mask_gt)
    head.check_anchors(pd_scores.shape[1])
    pairs = candidate_pairs(anc_points, gt_bboxes, mask, conv)
    out, _, _ = head_assign(pairs, pd_scores, pd_bboxes, labels, mask, gt_bboxes, head, anc_points, conv)
    return out


@torch.no_grad()
def dual_assign(
    o2m_scores,
    o2m_bboxes,
    o2o_scores,
    o2o_bboxes,
    anc_points,
    gt_labels,
    gt_bboxes,
    mask_gt,
    *,
    o2m_topk=O2M.topk,
    o2o_topk=O2O.topk,
    o2o_topk2=None,
    alpha=O2M.alpha,
    beta=O2M.beta,
    r=1.0,
    min_side=16.0,
    conflict="all",
    iou_type="ciou",
    eps=1e-9,
    o2o_alpha=None,
    o2o_beta=None,
    heads=None,
    convention: Convention | None = None,
) -> DualAssignment:
    """Both heads from one candidate search: o2m with (alpha, beta, o2m_topk), o2o with
    (r*alpha, r*beta, o2o_topk, o2o_topk2), each with its own predictions; plus statistics.
    o2o_alpha / o2o_beta override r*alpha / r*beta (an inconsistent o2o metric). heads: the two
    HeadSettings instead of those options (dualhead.settings). convention: another codebase's
    rules (dualhead.Convention) instead of min_side / conflict / iou_type / eps."""
    conv = resolve(convention, min_side=min_side, conflict=conflict, iou_type=iou_type, eps=eps)
    o2m_h, o2o_h = heads_or_options(heads, o2m_topk, o2o_topk, o2o_topk2, alpha, beta, r, o2o_alpha, o2o_beta)
    labels, mask = check_dual_inputs(
        o2m_scores,
        o2m_bboxes,
        o2o_scores,
        o2o_bboxes,
        anc_points,
        gt_labels,
        gt_bboxes,
        mask_gt,
        (o2m_h, o2o_h),
    )
    pairs = candidate_pairs(anc_points, gt_bboxes, mask, conv)
    o2m, o2m_pairs, m_o2m = head_assign(pairs, o2m_scores, o2m_bboxes, labels, mask, gt_bboxes, o2m_h, anc_points, conv)
    o2o, _, _ = head_assign(pairs, o2o_scores, o2o_bboxes, labels, mask, gt_bboxes, o2o_h, anc_points, conv)
    pairs = o2m_pairs
    if m_o2m is None:
        m_o2m = torch.zeros(0, dtype=torch.float32, device=o2m_scores.device)
    return DualAssignment(o2m, o2o, consistency_stats(pairs, m_o2m, o2m, o2o, mask))


def to_dense(a: Assignment, num_classes: int):
    """Compact -> ultralytics' (labels, bboxes, scores (B, N, C), fg_mask, gt_idx), pure torch."""
    return dense_torch(a, num_classes)
