"""Result containers: one head's compact assignment and the dual result with its statistics."""

from __future__ import annotations

from dataclasses import dataclass

import torch

RANK_DEPTH = 10  # the o2m ordering is tracked this deep per ground truth (csrc kRankDepth)


def check_dense_out(a: Assignment, num_classes: int, out: torch.Tensor | None) -> None:
    """The caller's buffer for the dense scores must be (B, N, num_classes)."""
    if out is not None and out.shape != (*a.fg_mask.shape, num_classes):
        raise ValueError(f"out must be {(*a.fg_mask.shape, num_classes)}, got {tuple(out.shape)}")


def dense_torch(a: Assignment, num_classes: int, out: torch.Tensor | None = None):
    """Compact -> ultralytics' (labels, bboxes, scores (B, N, C), fg_mask, gt_idx) in pure torch
    (the reference's; dualhead.ops.to_dense runs the kernel). out: a (B, N, C) fp32 buffer."""
    check_dense_out(a, num_classes, out)
    B, N = a.fg_mask.shape
    scores = torch.zeros(B, N, num_classes, dtype=torch.float32, device=a.scores.device) if out is None else out.zero_()
    # as the kernel: the score on class `labels`, and a label out of range writes nothing
    ok = (a.labels >= 0) & (a.labels < num_classes)
    lab = a.labels.clamp(0, num_classes - 1).unsqueeze(-1)
    scores.scatter_(2, lab, torch.where(ok, a.scores.float(), 0.0).unsqueeze(-1))
    return a.labels, a.bboxes, scores, a.fg_mask, a.gt_idx


class Assignment:
    """One head's targets in compact form (B images, N anchors).

    fg_mask (B, N) bool     anchor is a positive
    gt_idx  (B, N) int64    its ground truth (0 for background, as ultralytics)
    labels  (B, N) int64    class of gt_idx (clamped >= 0; for background: ground truth 0's)
    bboxes  (B, N, 4) fp32  box of gt_idx, xyxy pixels
    scores  (B, N) fp32     target score t = m * Og / (Mg + eps) on class `labels`; 0 on background

    labels and bboxes may be given, or gathered from gt_labels (B, M) / gt_bboxes (B, M, 4) on
    first access: the kernels do not write them, since fresh output pages are a large share of
    an assignment's cost on small CPUs and a loss often needs only the positives' boxes.
    """

    __slots__ = ("fg_mask", "gt_idx", "scores", "_labels", "_bboxes", "_gt_labels", "_gt_bboxes", "_dense")

    def __init__(
        self, fg_mask, gt_idx, labels=None, bboxes=None, scores=None, *, gt_labels=None, gt_bboxes=None, dense=None
    ):
        """dense(assignment, num_classes, out) -> the 5-tuple of to_dense: dualhead.ops passes its
        kernel; by default (dualhead.reference: a leaf oracle that never runs the kernels) pure torch."""
        if scores is None or (labels is None and gt_labels is None) or (bboxes is None and gt_bboxes is None):
            raise ValueError(
                "Assignment needs scores, and labels/bboxes or the gt_labels/gt_bboxes to gather them from"
            )
        self.fg_mask, self.gt_idx, self.scores = fg_mask, gt_idx, scores
        self._labels, self._bboxes = labels, bboxes
        self._gt_labels, self._gt_bboxes = gt_labels, gt_bboxes
        self._dense = dense or dense_torch

    @property
    def labels(self) -> torch.Tensor:
        if self._labels is None:
            self._labels = self._gt_labels.gather(1, self.gt_idx).clamp_(min=0)
        return self._labels

    @property
    def bboxes(self) -> torch.Tensor:
        if self._bboxes is None:
            idx = self.gt_idx.unsqueeze(-1).expand(-1, -1, 4)
            self._bboxes = self._gt_bboxes.float().gather(1, idx)
        return self._bboxes

    def to_dense(self, num_classes: int, out: torch.Tensor | None = None):
        """The ultralytics 5-tuple: (target_labels, target_bboxes, target_scores (B,N,C),
        fg_mask, target_gt_idx). The (B, N, C) scores are the largest thing an assigner writes;
        prefer the compact form where the consumer allows it (BCE needs no dense target)."""
        return self._dense(self, num_classes, out)

    def __repr__(self):
        B, N = self.fg_mask.shape
        return f"Assignment(B={B}, N={N}, positives={int(self.fg_mask.sum())})"


@dataclass
class ConsistencyStats:
    """How consistent the two heads' assignments are, per ground truth and in summary.

    pick (B, M) int64   the o2o positive of each ground truth (its highest target score; -1: none)
    rank (B, M) int64   that anchor's 0-based rank among the ground truth's candidates in o2m
                        metric order (larger metric first, smaller anchor index on ties); exact
                        below RANK_DEPTH = 10, RANK_DEPTH beyond it or when the pick is not a
                        candidate of the ground truth; -1: no pick
    gap  (B, M) fp32    supervision gap A = t_o2o,i - 1[i in O] t_o2m,i + sum_{k in O \\ {i}} t_o2m,k
                        (O: the ground truth's o2m positives, i: its o2o pick); 0 for padding
    valid (B, M) bool   real ground truths
    top1/top5/top10     fraction of real ground truths with an o2o pick whose rank < 1/5/10
    gap_mean            mean gap over real ground truths
    """

    pick: torch.Tensor
    rank: torch.Tensor
    gap: torch.Tensor
    valid: torch.Tensor

    # The summaries are computed on first access (a host sync), not at construction, so code
    # that only needs the tensors -- e.g. under torch.compile(fullgraph=True) -- never syncs.
    def _rates(self):
        has = self.valid & (self.pick >= 0)
        n = int(has.sum())
        r = self.rank[has]
        return tuple(float((r < k).sum()) / n if n else float("nan") for k in (1, 5, 10))

    @property
    def top1(self) -> float:
        return self._rates()[0]

    @property
    def top5(self) -> float:
        return self._rates()[1]

    @property
    def top10(self) -> float:
        return self._rates()[2]

    @property
    def gap_mean(self) -> float:
        nv = int(self.valid.sum())
        return float(self.gap[self.valid].sum()) / nv if nv else float("nan")

    def as_dict(self) -> dict:
        return {"top1": self.top1, "top5": self.top5, "top10": self.top10, "gap": self.gap_mean}


@dataclass
class DualAssignment:
    """Both heads' assignments from one call, and their consistency statistics."""

    o2m: Assignment
    o2o: Assignment
    stats: ConsistencyStats
