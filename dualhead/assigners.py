"""nn.Module assigners with ultralytics' interfaces (contract §2)."""

from __future__ import annotations

import torch
from torch import nn

from dualhead import ops
from dualhead.assignment import DualAssignment
from dualhead.conventions import Convention
from dualhead.settings import O2M, O2O, heads_or_options


def _min_side(stride) -> float:
    """ultralytics' stride_val: stride[1] when there are several levels, else stride[0]."""
    stride = list(stride)
    return float(stride[1] if len(stride) > 1 else stride[0])


def _call_rules(convention, min_side, conflict, iou_type, eps) -> dict:
    """The ops' keywords for an assigner's rules: its Convention when it has one, else the
    shorthand (ultralytics 8.4.128's rules at its min_side)."""
    if convention is not None:
        return dict(convention=convention)
    return dict(min_side=min_side, conflict=conflict, iou_type=iou_type, eps=eps)


def _check_classes(scores, num_classes, name="pd_scores"):
    """The scores' class dimension must be the assigner's num_classes (contract §4: a shape error is
    an error; a mismatch would give positives with all-zero dense targets)."""
    if isinstance(scores, torch.Tensor) and scores.dim() == 3 and scores.shape[-1] != num_classes:
        raise ValueError(
            f"{name} has {scores.shape[-1]} classes (shape {tuple(scores.shape)}) but the assigner was "
            f"built with num_classes={num_classes}"
        )


class TaskAlignedAssigner(nn.Module):
    """Drop-in for ultralytics.utils.tal.TaskAlignedAssigner (same constructor, forward and
    return tuple), computed by dualhead's kernels.

    Extra keyword-only options: conflict ("all" as ultralytics, "claimants" or "all_pairs"),
    iou_type; or convention, another codebase's rules (dualhead.Convention: e.g.
    Convention.ultralytics("8.3.0", stride), which dualhead.integrations.ultralytics.patch() picks
    for the installed release), which then decides them (and eps) instead.
    """

    def __init__(
        self,
        topk: int = 13,
        num_classes: int = 80,
        alpha: float = 1.0,
        beta: float = 6.0,
        stride=None,
        eps: float = 1e-9,
        topk2: int | None = None,
        *,
        conflict: str = "all",
        iou_type: str = "ciou",
        convention: Convention | None = None,
    ):
        super().__init__()
        self.topk = topk
        self.topk2 = topk2 or topk
        self.num_classes = num_classes
        self.alpha = alpha
        self.beta = beta
        self.stride = list(stride) if stride is not None else [8, 16, 32]
        self.stride_val = _min_side(self.stride)
        self.eps = eps
        self.conflict = conflict
        self.iou_type = iou_type
        self.convention = convention

    def assign(self, pd_scores, pd_bboxes, anc_points, gt_labels, gt_bboxes, mask_gt):
        """Compact form (dualhead.Assignment): no (B, N, C) tensor."""
        _check_classes(pd_scores, self.num_classes)
        return ops.assign(
            pd_scores,
            pd_bboxes,
            anc_points,
            gt_labels,
            gt_bboxes,
            mask_gt,
            topk=self.topk,
            topk2=self.topk2,
            alpha=self.alpha,
            beta=self.beta,
            **_call_rules(self.convention, self.stride_val, self.conflict, self.iou_type, self.eps),
        )

    @torch.no_grad()
    def forward(self, pd_scores, pd_bboxes, anc_points, gt_labels, gt_bboxes, mask_gt):
        """Returns (target_labels (B,N) int64, target_bboxes (B,N,4) fp32, target_scores (B,N,C) fp32,
        fg_mask (B,N) bool, target_gt_idx (B,N) int64)."""
        return self.assign(pd_scores, pd_bboxes, anc_points, gt_labels, gt_bboxes, mask_gt).to_dense(self.num_classes)


class DualAssigner(nn.Module):
    """YOLOv10 consistent dual assignment: o2m (top-k) and o2o heads in one call.

    The o2o head uses alpha * r and beta * r (r = 1: the paper's consistent metric).
    min_side=None means stride[1], as ultralytics' small-box floor; 0 gives the original YOLOv10.
    o2o_alpha / o2o_beta set the o2o exponents directly (an inconsistent metric, for ablations).
    heads: the (o2m, o2o) HeadSettings instead of those options; either way they are checked here
    and kept as self.o2m, self.o2o (dualhead.settings).
    """

    def __init__(
        self,
        num_classes: int = 80,
        o2m_topk: int = O2M.topk,
        o2o_topk: int = O2O.topk,
        o2o_topk2: int | None = O2O.topk2,
        alpha: float = O2M.alpha,
        beta: float = O2M.beta,
        r: float = 1.0,
        stride=(8, 16, 32),
        min_side=None,
        conflict: str = "all",
        *,
        iou_type: str = "ciou",
        eps: float = 1e-9,
        o2o_alpha: float | None = None,
        o2o_beta: float | None = None,
        heads=None,
        convention: Convention | None = None,
    ):
        super().__init__()
        self.num_classes = num_classes
        self.o2m, self.o2o = heads_or_options(heads, o2m_topk, o2o_topk, o2o_topk2, alpha, beta, r, o2o_alpha, o2o_beta)
        self.stride = tuple(stride)
        self.min_side = _min_side(self.stride) if min_side is None else min_side
        self.conflict, self.iou_type, self.eps = conflict, iou_type, eps
        self.convention = convention  # another codebase's rules instead of min_side / conflict / iou_type / eps

    @torch.no_grad()
    def forward(
        self, o2m_scores, o2m_bboxes, o2o_scores, o2o_bboxes, anc_points, gt_labels, gt_bboxes, mask_gt
    ) -> DualAssignment:
        _check_classes(o2m_scores, self.num_classes, "o2m_scores")
        return ops.dual_assign(
            o2m_scores,
            o2m_bboxes,
            o2o_scores,
            o2o_bboxes,
            anc_points,
            gt_labels,
            gt_bboxes,
            mask_gt,
            heads=(self.o2m, self.o2o),
            **_call_rules(self.convention, self.min_side, self.conflict, self.iou_type, self.eps),
        )
